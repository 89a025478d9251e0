//! The wire format of a command run over the API (`POST /api/v1/leases/{id}/exec`): the
//! response body is a sequence of frames, written as the command runs, that the client reads
//! as they come.
//!
//! A frame is an 8-byte header — its kind (one byte), three zero bytes, the payload's length
//! (a big-endian `u32`) — and the payload. The kinds: `1` bytes the command wrote to its
//! stdout, `2` to its stderr, `0` a keep-alive with no payload (sent while the command is
//! quiet, so that a client that went away is noticed and its command stopped), and `3` the
//! end, whose payload is JSON ([`Ending`]): the exit code, or why there is none. Nothing
//! follows the end; a body that stops before it means the connection broke. A reader skips
//! kinds it does not know, so later versions may add some.

use serde::{Deserialize, Serialize};

/// The media type of the response body.
pub const CONTENT_TYPE: &str = "application/vnd.drydock.exec-stream";

/// The largest payload a reader accepts: a writer sends at most 16 KiB of output at once.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// The length of a frame's header.
const HEADER: usize = 8;

const KEEP_ALIVE: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const END: u8 = 3;

/// One frame of an exec stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Nothing: the command is still running.
    KeepAlive,
    /// Bytes the command wrote to its stdout.
    Stdout(Vec<u8>),
    /// Bytes the command wrote to its stderr.
    Stderr(Vec<u8>),
    /// How it ended: the last frame.
    End(Ending),
}

/// How a streamed command ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ending {
    /// Its exit code; none when it was killed, timed out, could not start or was stopped.
    pub exit_code: Option<i32>,
    /// What the host says about its end (a signal, a timeout, a lease that ended under it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Frame {
    /// The frame as bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<[u8]>) = match self {
            Frame::KeepAlive => (KEEP_ALIVE, (&[][..]).into()),
            Frame::Stdout(bytes) => (STDOUT, bytes.into()),
            Frame::Stderr(bytes) => (STDERR, bytes.into()),
            Frame::End(ending) => (
                END,
                serde_json::to_vec(ending)
                    .expect("an ending serializes")
                    .into(),
            ),
        };
        let length = u32::try_from(payload.len()).expect("a frame's payload fits a u32");
        let mut bytes = Vec::with_capacity(HEADER + payload.len());
        bytes.extend_from_slice(&[kind, 0, 0, 0]);
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend_from_slice(&payload);
        bytes
    }
}

/// A stream that does not follow the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A payload longer than [`MAX_PAYLOAD`].
    #[error("a frame of {0} bytes is longer than the {MAX_PAYLOAD} an exec stream allows")]
    TooLong(usize),
    /// An end whose payload is not the JSON of an [`Ending`].
    #[error("the exec stream's end is not valid: {0}")]
    BadEnd(String),
}

/// Cuts frames out of the bytes of a body as they arrive, in whatever pieces.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    /// Adds bytes that arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, if one has arrived; frames of unknown kinds are skipped.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        loop {
            if self.buffer.len() < HEADER {
                return Ok(None);
            }
            let length = u32::from_be_bytes(self.buffer[4..HEADER].try_into().unwrap()) as usize;
            if length > MAX_PAYLOAD {
                return Err(FrameError::TooLong(length));
            }
            if self.buffer.len() < HEADER + length {
                return Ok(None);
            }
            let kind = self.buffer[0];
            let payload: Vec<u8> = self.buffer.drain(..HEADER + length).skip(HEADER).collect();
            let frame = match kind {
                KEEP_ALIVE => Frame::KeepAlive,
                STDOUT => Frame::Stdout(payload),
                STDERR => Frame::Stderr(payload),
                END => Frame::End(
                    serde_json::from_slice(&payload)
                        .map_err(|e| FrameError::BadEnd(e.to_string()))?,
                ),
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }

    /// Whether bytes of an unfinished frame are waiting.
    pub fn is_midway(&self) -> bool {
        !self.buffer.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<Frame> {
        vec![
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::KeepAlive,
            Frame::Stderr(vec![0, 255, 10]),
            Frame::End(Ending {
                exit_code: Some(3),
                error: None,
            }),
        ]
    }

    #[test]
    fn frames_come_back_whole_however_the_bytes_are_cut() {
        let wire: Vec<u8> = frames().iter().flat_map(Frame::encode).collect();
        for piece in [1, 3, 7, 8, 9, wire.len()] {
            let mut decoder = Decoder::default();
            let mut decoded = Vec::new();
            for bytes in wire.chunks(piece) {
                decoder.push(bytes);
                while let Some(frame) = decoder.next_frame().unwrap() {
                    decoded.push(frame);
                }
            }
            assert_eq!(decoded, frames(), "cut into pieces of {piece}");
            assert!(!decoder.is_midway());
        }
    }

    #[test]
    fn unknown_kinds_are_skipped_and_a_giant_frame_is_refused() {
        let mut decoder = Decoder::default();
        decoder.push(&[9, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        decoder.push(&Frame::KeepAlive.encode());
        assert_eq!(decoder.next_frame().unwrap(), Some(Frame::KeepAlive));
        let mut decoder = Decoder::default();
        decoder.push(&[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLong(u32::MAX as usize))
        );
    }

    #[test]
    fn an_ending_without_an_exit_code_says_why() {
        let end = Frame::End(Ending {
            exit_code: None,
            error: Some("timed out after 1s".into()),
        });
        let mut decoder = Decoder::default();
        decoder.push(&end.encode());
        assert_eq!(decoder.next_frame().unwrap(), Some(end));
        let mut decoder = Decoder::default();
        decoder.push(&[3, 0, 0, 0, 0, 0, 0, 2, b'{', b'x']);
        assert!(matches!(decoder.next_frame(), Err(FrameError::BadEnd(_))));
    }
}
