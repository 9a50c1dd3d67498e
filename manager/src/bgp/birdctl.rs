//! A client for BIRD 2's control socket (what `birdc -s SOCK` talks to), without the `birdc`
//! binary.
//!
//! The protocol: on connect BIRD sends `0001 BIRD 2.0.12 ready.`; each command is one line; a
//! reply is lines of a 4-digit code and `-` (more follows) or ` ` (the last line), and lines
//! starting with a space that continue the previous code. Codes 0xxx are final/ok, 1xxx table
//! data, 2xxx table headings, 8xxx runtime errors, 9xxx syntax errors. Lines starting with `+`
//! are asynchronous messages, not part of a reply. One command is in flight at a time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::status::{self, ProtocolStatus, Route, RouteCount};

/// A reply: `(code, text)` per line; a continuation line carries the code of the line it continues.
pub type Reply = Vec<(u16, String)>;

/// Errors name the socket and, for BIRD's own errors, carry BIRD's message. `Clone` so that one
/// failed reconfiguration can be handed to every caller that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtlError {
    #[error("bird control socket {}: connect: {message}", socket.display())]
    Connect { socket: PathBuf, message: String },
    #[error("bird control socket {}: no reply to `{command}` within {timeout:?}", socket.display())]
    Timeout {
        socket: PathBuf,
        command: String,
        timeout: Duration,
    },
    #[error("bird control socket {}: `{command}`: {message}", socket.display())]
    Io {
        socket: PathBuf,
        command: String,
        message: String,
    },
    #[error("bird control socket {}: `{command}`: bird closed the connection", socket.display())]
    Closed { socket: PathBuf, command: String },
    #[error("bird control socket {}: `{command}`: malformed reply line {line:?}", socket.display())]
    Protocol {
        socket: PathBuf,
        command: String,
        line: String,
    },
    #[error("bird control socket {}: `{command}` failed: {message} (code {code:04})", socket.display())]
    Bird {
        socket: PathBuf,
        command: String,
        code: u16,
        message: String,
    },
    #[error("bird control socket {}: refusing to send {command:?}: {why}", socket.display())]
    BadCommand {
        socket: PathBuf,
        command: String,
        why: &'static str,
    },
}

/// Reply codes that mean `configure` worked: 0003 Reconfigured, 0004 Reconfiguration in progress,
/// 0005 Reconfiguration already in progress, queueing new config, 0018 Reconfiguration
/// confirmed, 0019 Nothing to do, 0020 Configuration OK (`configure check`).
const CONFIGURE_OK: [u16; 6] = [3, 4, 5, 18, 19, 20];

/// Filters for `show route`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteFilter {
    /// `table master4`; `None`: BIRD's default (all tables of the default channel types).
    pub table: Option<String>,
    /// `protocol Mesh_10_0_0_2`.
    pub protocol: Option<String>,
    /// `all`: with attributes (`Type`, `BGP.as_path`, …).
    pub all: bool,
}

/// Accumulates the lines of one reply (the framing, apart from the socket).
#[derive(Debug, Default)]
pub struct ReplyParser {
    lines: Reply,
    code: Option<u16>,
}

impl ReplyParser {
    /// Feed one line (without its `\n`). `Ok(Some(reply))` when it ended a reply, `Err(line)` when
    /// it is not BIRD's protocol.
    pub fn push(&mut self, line: &str) -> Result<Option<Reply>, String> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(message) = line.strip_prefix('+') {
            tracing::debug!(message, "bird: asynchronous message");
            return Ok(None);
        }
        if let Some(text) = line.strip_prefix(' ') {
            let code = self.code.ok_or_else(|| line.to_string())?;
            self.lines.push((code, text.to_string()));
            return Ok(None);
        }
        let b = line.as_bytes();
        if b.len() < 4 || !b[..4].iter().all(u8::is_ascii_digit) || !matches!(b.get(4), None | Some(b' ' | b'-')) {
            return Err(line.to_string());
        }
        let code: u16 = line[..4].parse().map_err(|_| line.to_string())?;
        self.lines.push((code, line.get(5..).unwrap_or_default().to_string()));
        if b.get(4) == Some(&b'-') {
            self.code = Some(code);
            return Ok(None);
        }
        self.code = None;
        Ok(Some(std::mem::take(&mut self.lines)))
    }
}

/// The reply as `birdc` prints it: the text of every line, code 0000 lines left out.
pub fn reply_text(reply: &Reply) -> String {
    let mut out = String::new();
    for (code, text) in reply {
        if *code != 0 {
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}

/// The code of the last line of a reply (8xxx runtime error, 9xxx syntax error).
fn final_code(reply: &Reply) -> u16 {
    reply.last().map_or(0, |(c, _)| *c)
}

/// An open control connection.
#[derive(Debug)]
pub struct BirdCtl {
    socket: PathBuf,
    stream: BufReader<UnixStream>,
    timeout: Duration,
    /// BIRD's greeting, e.g. `BIRD 2.0.12 ready.`
    greeting: String,
    /// Set when a reply was cut off (timeout, bad line): the stream is out of step.
    broken: bool,
}

impl BirdCtl {
    /// Connect and read BIRD's greeting; `timeout` bounds the connect and every later wait for a
    /// reply line.
    pub async fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<Self, CtlError> {
        let socket = path.as_ref().to_path_buf();
        let stream = match tokio::time::timeout(timeout, UnixStream::connect(&socket)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(CtlError::Connect {
                    socket,
                    message: e.to_string(),
                })
            }
            Err(_) => {
                return Err(CtlError::Connect {
                    socket,
                    message: format!("timed out after {timeout:?}"),
                })
            }
        };
        let mut ctl = BirdCtl {
            socket,
            stream: BufReader::new(stream),
            timeout,
            greeting: String::new(),
            broken: false,
        };
        let hello = ctl.read_reply("(greeting)").await?;
        ctl.greeting = hello.last().map(|(_, t)| t.clone()).unwrap_or_default();
        Ok(ctl)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// BIRD's greeting, e.g. `BIRD 2.0.12 ready.`
    pub fn greeting(&self) -> &str {
        &self.greeting
    }

    /// Send one command and read its whole reply. A reply ending in 8xxx/9xxx is an error
    /// carrying BIRD's message.
    pub async fn command(&mut self, command: &str) -> Result<Reply, CtlError> {
        let bad = |why| CtlError::BadCommand {
            socket: self.socket.clone(),
            command: command.to_string(),
            why,
        };
        if command.contains(['\n', '\r']) {
            return Err(bad("it contains a line break"));
        }
        if self.broken {
            return Err(bad("the connection is out of step after an earlier error; reconnect"));
        }
        let write = async {
            let s = self.stream.get_mut();
            s.write_all(format!("{command}\n").as_bytes()).await?;
            s.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.io_error(command, e)),
            Err(_) => return Err(self.timed_out(command)),
        }
        let reply = self.read_reply(command).await?;
        let code = final_code(&reply);
        if code >= 8000 {
            let message = reply
                .iter()
                .filter(|(c, _)| *c >= 8000)
                .map(|(_, t)| t.as_str())
                .collect::<Vec<_>>();
            return Err(CtlError::Bird {
                socket: self.socket.clone(),
                command: command.to_string(),
                code,
                message: message.join("; "),
            });
        }
        Ok(reply)
    }

    async fn read_reply(&mut self, command: &str) -> Result<Reply, CtlError> {
        let mut parser = ReplyParser::default();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = match tokio::time::timeout(self.timeout, self.stream.read_until(b'\n', &mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(self.io_error(command, e)),
                Err(_) => return Err(self.timed_out(command)),
            };
            if n == 0 || buf.last() != Some(&b'\n') {
                self.broken = true;
                return Err(CtlError::Closed {
                    socket: self.socket.clone(),
                    command: command.to_string(),
                });
            }
            let line = String::from_utf8_lossy(&buf[..buf.len() - 1]);
            match parser.push(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(line) => {
                    self.broken = true;
                    return Err(CtlError::Protocol {
                        socket: self.socket.clone(),
                        command: command.to_string(),
                        line,
                    });
                }
            }
        }
    }

    fn io_error(&mut self, command: &str, e: std::io::Error) -> CtlError {
        self.broken = true;
        CtlError::Io {
            socket: self.socket.clone(),
            command: command.to_string(),
            message: e.to_string(),
        }
    }

    fn timed_out(&mut self, command: &str) -> CtlError {
        self.broken = true;
        CtlError::Timeout {
            socket: self.socket.clone(),
            command: command.to_string(),
            timeout: self.timeout,
        }
    }

    /// `birdc configure "FILE"`: load `conf` (no restart; sessions whose options did not change
    /// stay up). A config BIRD refuses is an error with BIRD's `file:line:col message`.
    pub async fn configure(&mut self, conf: &Path) -> Result<(), CtlError> {
        let text = conf.to_string_lossy();
        let command = format!("configure \"{text}\"");
        if text.contains('"') {
            return Err(CtlError::BadCommand {
                socket: self.socket.clone(),
                command,
                why: "the path contains a quote",
            });
        }
        let reply = self.command(&command).await?;
        let code = final_code(&reply);
        if CONFIGURE_OK.contains(&code) {
            return Ok(());
        }
        let message = reply.last().map(|(_, t)| t.clone()).unwrap_or_default();
        Err(CtlError::Bird {
            socket: self.socket.clone(),
            command,
            code,
            message,
        })
    }

    /// `birdc show protocols all`.
    pub async fn show_protocols_all(&mut self) -> Result<Vec<ProtocolStatus>, CtlError> {
        Ok(status::parse_protocols(&reply_text(
            &self.command("show protocols all").await?,
        )))
    }

    /// `birdc show route count`.
    pub async fn show_route_count(&mut self) -> Result<RouteCount, CtlError> {
        Ok(status::parse_route_count(&reply_text(
            &self.command("show route count").await?,
        )))
    }

    /// `birdc show route [table T] [protocol P] [all]`.
    pub async fn show_route(&mut self, filter: &RouteFilter) -> Result<Vec<Route>, CtlError> {
        let mut command = String::from("show route");
        for (word, name) in [("table", &filter.table), ("protocol", &filter.protocol)] {
            let Some(name) = name else { continue };
            command.push_str(&format!(" {word} {name}"));
            let symbol = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !symbol {
                return Err(CtlError::BadCommand {
                    socket: self.socket.clone(),
                    command,
                    why: "not a BIRD name",
                });
            }
        }
        if filter.all {
            command.push_str(" all");
        }
        Ok(status::parse_routes(&reply_text(&self.command(&command).await?)))
    }

    /// `birdc down`: BIRD shuts down, telling its peers (they withdraw our routes); kernel routes
    /// stay with `persist`. BIRD may close the socket before the reply arrives.
    pub async fn down(&mut self) -> Result<(), CtlError> {
        self.exit_command("down").await
    }

    /// `birdc graceful restart`: BIRD exits without telling its peers, which keep our routes as
    /// stale (graceful restart helpers) until the next BIRD, started with `-R`, re-establishes
    /// and sends End-of-RIB. Kernel routes stay with `persist`. Reply 0025.
    pub async fn graceful_restart(&mut self) -> Result<(), CtlError> {
        self.exit_command("graceful restart").await
    }

    async fn exit_command(&mut self, command: &str) -> Result<(), CtlError> {
        match self.command(command).await {
            Ok(_) | Err(CtlError::Closed { .. }) => Ok(()),
            Err(CtlError::Io { message, .. }) if message.contains("reset") || message.contains("roken pipe") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
