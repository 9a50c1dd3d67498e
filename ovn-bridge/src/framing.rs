//! JSON-RPC 1.0 framing as OVSDB uses it: JSON objects back to back on a byte stream, with no
//! length prefix or delimiter. The framer finds where each top-level value ends by tracking
//! nesting depth and string/escape state, scanning every byte once across reads (a large
//! initial monitor reply arrives in many reads), then hands exactly that slice to serde_json.

use serde_json::Value;

/// Refuse to buffer a single message larger than this: a peer that never closes its object
/// would otherwise grow the buffer without bound.
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("bad json from server: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stray byte {0:#04x} between messages")]
    Stray(u8),
    #[error("message larger than {MAX_MESSAGE} bytes")]
    TooLarge,
}

#[derive(Debug, Default)]
pub(crate) struct Framer {
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned.
    pos: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl Framer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if the buffer holds one.
    pub(crate) fn next_message(&mut self) -> Result<Option<Value>, FrameError> {
        while self.pos < self.buf.len() {
            let b = self.buf[self.pos];
            self.pos += 1;
            if self.in_string {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' if self.depth > 0 => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' if self.depth > 0 => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let end = self.pos;
                        let value = serde_json::from_slice(&self.buf[..end]);
                        self.buf.drain(..end);
                        self.pos = 0;
                        return Ok(Some(value?));
                    }
                }
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                    // Whitespace between messages: drop it so the next message starts at 0.
                    self.buf.drain(..self.pos);
                    self.pos = 0;
                }
                _ if self.depth == 0 => return Err(FrameError::Stray(b)),
                _ => {}
            }
        }
        if self.buf.len() > MAX_MESSAGE {
            return Err(FrameError::TooLarge);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn all(f: &mut Framer) -> Vec<Value> {
        let mut out = vec![];
        while let Some(v) = f.next_message().unwrap() {
            out.push(v);
        }
        out
    }

    #[test]
    fn splits_back_to_back_messages() {
        let mut f = Framer::new();
        f.extend(br#"{"id":1,"result":[]}{"id":null,"method":"update","params":["m",{}]}  {"a":"}"}"#);
        assert_eq!(
            all(&mut f),
            vec![
                json!({"id":1,"result":[]}),
                json!({"id":null,"method":"update","params":["m",{}]}),
                json!({"a":"}"})
            ]
        );
    }

    #[test]
    fn joins_a_message_split_anywhere() {
        let text = br#"{"s":"q\"uo{te\\","n":[1,{"x":"]"}],"u":"\u00e9"}"#;
        for cut in 1..text.len() {
            let mut f = Framer::new();
            f.extend(&text[..cut]);
            assert!(f.next_message().unwrap().is_none(), "cut {cut}");
            f.extend(&text[cut..]);
            let v = f.next_message().unwrap().unwrap();
            assert_eq!(v["s"], "q\"uo{te\\");
            assert_eq!(v["u"], "\u{e9}");
            assert!(f.next_message().unwrap().is_none());
        }
    }

    #[test]
    fn rejects_garbage_between_messages() {
        let mut f = Framer::new();
        f.extend(b"{}x");
        assert_eq!(f.next_message().unwrap(), Some(json!({})));
        assert!(matches!(f.next_message(), Err(FrameError::Stray(b'x'))));
    }
}
