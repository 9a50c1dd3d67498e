//! A blocking rtnetlink socket for the pod ADD path: the requests of one step go out in one
//! `sendmsg`, and their acks are read back on the calling thread.
//!
//! Why not the `rtnetlink` handle used everywhere else: each of its requests travels through a
//! channel to the connection task and its reply comes back the same way, so a request costs
//! two task wake-ups on top of the kernel's work. Wiring a pod takes about ten requests, and
//! on a small VM a wake-up of a parked thread costs tens of microseconds, more than the kernel
//! spends on most of these requests. The kernel runs the messages of one datagram in order and
//! carries on after a failure (each gets its own ack), so ordering holds without waiting.
//!
//! Messages are still built with netlink-packet-route; only the send/ack loop lives here.

use std::fs::File;
use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use rtnetlink::packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL, NLM_F_REPLACE,
    NLM_F_REQUEST,
};
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket};

use super::link::Link;
use super::{netns, Error, Result};

/// One request of a batch, with what it does for error messages (`add route …`).
pub struct Request {
    msg: RouteNetlinkMessage,
    flags: u16,
    op: String,
}

impl Request {
    /// `ip … add`: create, and fail with `EEXIST` if it is there.
    pub fn create(msg: RouteNetlinkMessage, op: impl Into<String>) -> Self {
        Request::with_flags(msg, NLM_F_CREATE | NLM_F_EXCL, op)
    }

    /// `ip … replace`: create or overwrite.
    pub fn replace(msg: RouteNetlinkMessage, op: impl Into<String>) -> Self {
        Request::with_flags(msg, NLM_F_CREATE | NLM_F_REPLACE, op)
    }

    /// `ip link set …` and deletes: no creation flags.
    pub fn change(msg: RouteNetlinkMessage, op: impl Into<String>) -> Self {
        Request::with_flags(msg, 0, op)
    }

    fn with_flags(msg: RouteNetlinkMessage, flags: u16, op: impl Into<String>) -> Self {
        Request {
            msg,
            flags,
            op: op.into(),
        }
    }
}

/// A blocking `NETLINK_ROUTE` socket bound to one netns (the one it was opened in).
pub struct SyncNetlink {
    socket: Socket,
    seq: u32,
    /// `None` for the daemon's netns, else the pod's netns path (for error messages).
    ns: Option<PathBuf>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for SyncNetlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncNetlink").field("ns", &self.ns).finish()
    }
}

/// Big enough for any reply to the requests sent here (a link message is ~1.5 KB).
const RECV_BUF: usize = 32 * 1024;

impl SyncNetlink {
    /// A socket in the calling thread's netns: call it from a thread that never enters pods
    /// (tokio workers and blocking threads), so this is the daemon's.
    pub fn open() -> Result<Self> {
        Self::wrap(open_socket(), None)
    }

    /// A socket inside the netns open as `ns` (`path` names it in messages), made on the
    /// resident netns thread; it stays bound to that netns for its whole life.
    pub fn open_in(ns: &File, path: &Path) -> Result<Self> {
        let socket = netns::run_in_file(ns, path, open_socket)?;
        Self::wrap(socket, Some(path.to_path_buf()))
    }

    fn wrap(socket: io::Result<Socket>, ns: Option<PathBuf>) -> Result<Self> {
        let socket = socket.map_err(|source| Error::Netlink {
            op: format!("open netlink socket{}", super::in_netns_suffix(ns.as_deref())),
            source,
        })?;
        Ok(SyncNetlink {
            socket,
            seq: 0,
            ns,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// Suffix for error messages: `" in /run/netns/x"`, or nothing for the node netns.
    pub fn where_(&self) -> String {
        super::in_netns_suffix(self.ns.as_deref())
    }

    /// Sends every request in one datagram and waits for all their acks. The first failure is
    /// returned, named by its `op` and this socket's netns; later requests still ran.
    pub fn run(&mut self, requests: Vec<Request>) -> Result<()> {
        let mut ops = Vec::with_capacity(requests.len());
        let mut out = Vec::new();
        for req in requests {
            let seq = self.next_seq();
            append(&mut out, req.msg, NLM_F_REQUEST | NLM_F_ACK | req.flags, seq);
            ops.push((seq, req.op));
        }
        let (Some(first), Some(last)) = (ops.first().map(|o| o.0), ops.last().map(|o| o.0)) else {
            return Ok(());
        };
        let mut first_error = None;
        self.exchange(&out, first..=last, |seq, reply| {
            if let Reply::Failed(source) = reply {
                if first_error.is_none() {
                    let op = ops.iter().find(|(s, _)| *s == seq).map(|(_, op)| op.as_str());
                    first_error = Some((op.unwrap_or("netlink request").to_string(), source));
                }
            }
        })?;
        match first_error {
            None => Ok(()),
            Some((op, source)) => Err(Error::Netlink {
                op: format!("{op}{}", self.where_()),
                source,
            }),
        }
    }

    /// `ip link add …` asking the kernel to echo the new link back (`NLM_F_ECHO`, Linux 6.1+), which
    /// saves a lookup for its index and MAC. `Ok(None)` if the kernel sent no echo.
    pub fn create_link(&mut self, msg: LinkMessage, op: impl Into<String>) -> Result<Option<Link>> {
        let flags = NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
        self.one_link(RouteNetlinkMessage::NewLink(msg), flags)?
            .map_err(|source| Error::Netlink {
                op: format!("{}{}", op.into(), self.where_()),
                source,
            })
    }

    /// `ip link show dev <name>`; `Ok(None)` when there is no such link.
    pub fn link_get(&mut self, name: &str) -> Result<Option<Link>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.one_link(RouteNetlinkMessage::GetLink(msg), 0)? {
            Err(e) if e.raw_os_error() == Some(Errno::ENODEV as i32) => Ok(None),
            Err(source) => Err(Error::Netlink {
                op: format!("get link {name}{}", self.where_()),
                source,
            }),
            Ok(link) => Ok(link),
        }
    }

    /// One request whose answer may carry a link. The outer error is the socket's; the inner
    /// one is the kernel's answer to the request.
    fn one_link(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<io::Result<Option<Link>>> {
        let seq = self.next_seq();
        let mut out = Vec::new();
        append(&mut out, msg, NLM_F_REQUEST | NLM_F_ACK | flags, seq);
        let mut answer = Ok(None);
        self.exchange(&out, seq..=seq, |_, reply| match reply {
            Reply::Link(link) => answer = Ok(Link::from_message(&link)),
            Reply::Failed(e) => answer = Err(e),
            Reply::Ok => {}
        })?;
        Ok(answer)
    }

    /// A socket serves one pod setup (about ten requests), so its numbers never wrap.
    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// Sends `out` and reads until every request numbered `seqs` has been acked, handing each
    /// reply to `seen` with its sequence number. Replies to other numbers (left over from an
    /// exchange that failed half-way) are skipped.
    fn exchange(&mut self, out: &[u8], seqs: RangeInclusive<u32>, mut seen: impl FnMut(u32, Reply)) -> Result<()> {
        let acks = seqs.clone().count();
        let io_err = |what: &str, source: io::Error| Error::Netlink {
            op: format!("{what} netlink{}", super::in_netns_suffix(self.ns.as_deref())),
            source,
        };
        self.socket.send(out, 0).map_err(|e| io_err("send", e))?;
        let mut done = 0;
        while done < acks {
            self.buf.clear();
            let n = match self.socket.recv(&mut self.buf, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err("receive", e)),
            };
            let mut off = 0;
            while off < n {
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io_err("decode", io::Error::new(io::ErrorKind::InvalidData, e.to_string())))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                let seq = msg.header.sequence_number;
                if !seqs.contains(&seq) {
                    off += (len + 3) & !3;
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Error(err) => {
                        done += 1;
                        seen(
                            seq,
                            if err.code.is_some() {
                                Reply::Failed(err.to_io())
                            } else {
                                Reply::Ok
                            },
                        );
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => {
                        seen(seq, Reply::Link(Box::new(link)))
                    }
                    _ => {}
                }
                off += (len + 3) & !3;
            }
        }
        Ok(())
    }
}

/// What came back for one request.
enum Reply {
    Ok,
    Failed(io::Error),
    Link(Box<LinkMessage>),
}

fn open_socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    Ok(socket)
}

fn append(out: &mut Vec<u8>, msg: RouteNetlinkMessage, flags: u16, seq: u32) {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
    msg.finalize();
    let start = out.len();
    // Netlink messages in one datagram start on 4-byte boundaries.
    let len = (msg.buffer_len() + 3) & !3;
    out.resize(start + len, 0);
    msg.serialize(&mut out[start..start + msg.buffer_len()]);
}

/// How many pod wiring jobs run at once. Each holds a blocking-pool thread, and with glibc every
/// busy thread soon has a malloc arena of its own that keeps its memory; the jobs are short and
/// mostly serialised by the kernel's RTNL lock anyway, so more would not finish sooner.
const MAX_JOBS: usize = 4;
static JOBS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_JOBS);

/// Runs blocking pod wiring (this module's sockets, `/proc/sys` writes) on the blocking pool.
/// It runs to its end even if the caller goes away; a panic in `f` is re-raised here.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    let permit = JOBS.acquire().await.map_err(|e| Error::Netlink {
        op: "pod dataplane job".into(),
        source: io::Error::other(e.to_string()),
    })?;
    let job = move || {
        let _permit = permit;
        f()
    };
    match tokio::task::spawn_blocking(job).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => std::panic::resume_unwind(join.into_panic()),
        // Only a runtime shutdown cancels a job; a restarted daemon's DEL cleans up after it.
        Err(join) => Err(Error::Netlink {
            op: "pod dataplane job".into(),
            source: io::Error::other(join.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::link::link_up_msg;

    #[test]
    fn a_batch_is_aligned_messages_with_their_own_sequence_numbers() {
        let mut out = Vec::new();
        let mut named = LinkMessage::default();
        // A 5-byte name leaves the message off a 4-byte boundary before padding.
        named.attributes.push(LinkAttribute::IfName("abcde".into()));
        append(
            &mut out,
            RouteNetlinkMessage::GetLink(named),
            NLM_F_REQUEST | NLM_F_ACK,
            7,
        );
        append(
            &mut out,
            RouteNetlinkMessage::NewLink(link_up_msg(3)),
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
            8,
        );
        let mut off = 0;
        let mut seen = Vec::new();
        while off < out.len() {
            assert_eq!(off % 4, 0, "message at {off} is not aligned");
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&out[off..]).unwrap();
            seen.push((msg.header.sequence_number, msg.header.flags));
            off += (msg.header.length as usize + 3) & !3;
        }
        assert_eq!(off, out.len());
        assert_eq!(
            seen,
            vec![
                (7, NLM_F_REQUEST | NLM_F_ACK),
                (8, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
            ]
        );
    }

    #[test]
    fn requests_carry_the_flags_of_their_ip_verb() {
        let msg = || RouteNetlinkMessage::NewLink(link_up_msg(1));
        assert_eq!(Request::create(msg(), "x").flags, NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(Request::replace(msg(), "x").flags, NLM_F_CREATE | NLM_F_REPLACE);
        assert_eq!(Request::change(msg(), "x").flags, 0);
    }
}
