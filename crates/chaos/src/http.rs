//! Just enough HTTP/1.1 to forward one message at a time: the head, and a
//! body framed by `Content-Length`, by chunks, or (for an answer) by the end
//! of the connection. Messages are kept as the raw bytes that came in, so
//! that they are forwarded unchanged.

use std::io::{self, BufRead, Read};

/// The longest head (request or status line and headers).
const HEAD_BYTES_MAX: usize = 64 << 10;
/// The most header lines of one head.
const HEADERS_MAX: usize = 200;
/// The longest body (a module is at most 256 MiB; a little more for chunks).
const BODY_BYTES_MAX: u64 = 300 << 20;

/// One message, raw, with what the proxy needs to know of it.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) raw: Vec<u8>,
    /// The method of a request; empty for an answer.
    pub(crate) method: String,
    /// The status of an answer; 0 for a request.
    pub(crate) status: u16,
    /// The sender will close the connection after this message.
    pub(crate) closes: bool,
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Reads one line (up to and including `\n`) into `raw`, within the head
/// bound; returns the line without its end.
fn read_line(reader: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<String> {
    let start = raw.len();
    let room = (HEAD_BYTES_MAX + start).saturating_sub(raw.len()) as u64;
    let read = reader.take(room).read_until(b'\n', raw)?;
    if read == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    if raw.last() != Some(&b'\n') {
        return Err(invalid("a line too long, or cut"));
    }
    let line = String::from_utf8_lossy(&raw[start..]);
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// How a body is framed.
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads a request; `None` if the connection ended cleanly before one began.
pub(crate) fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Message>> {
    if reader.fill_buf()?.is_empty() {
        return Ok(None);
    }
    let mut raw = Vec::new();
    let first = read_line(reader, &mut raw)?;
    let method = first
        .split(' ')
        .next()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| invalid("no method"))?
        .to_string();
    let head = read_headers(reader, &mut raw)?;
    let framing = if head.chunked {
        Framing::Chunked
    } else {
        head.length.map_or(Framing::None, Framing::Length)
    };
    read_body(reader, &mut raw, &framing)?;
    Ok(Some(Message {
        raw,
        method,
        status: 0,
        closes: head.closes,
    }))
}

/// Reads the answer to a request of `method`.
pub(crate) fn read_response(reader: &mut impl BufRead, method: &str) -> io::Result<Message> {
    let mut raw = Vec::new();
    let first = read_line(reader, &mut raw)?;
    let status: u16 = first
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| invalid(format!("a bad status line {first:?}")))?;
    let head = read_headers(reader, &mut raw)?;
    if (100..200).contains(&status) {
        return Err(invalid("an interim answer (100-continue is not supported)"));
    }
    let framing = if method == "HEAD" || status == 204 || status == 304 {
        Framing::None
    } else if head.chunked {
        Framing::Chunked
    } else {
        head.length.map_or(Framing::UntilClose, Framing::Length)
    };
    let closes = head.closes || matches!(framing, Framing::UntilClose);
    read_body(reader, &mut raw, &framing)?;
    Ok(Message {
        raw,
        method: String::new(),
        status,
        closes,
    })
}

struct Head {
    length: Option<u64>,
    chunked: bool,
    closes: bool,
}

fn read_headers(reader: &mut impl BufRead, raw: &mut Vec<u8>) -> io::Result<Head> {
    let mut head = Head {
        length: None,
        chunked: false,
        closes: false,
    };
    for _ in 0..=HEADERS_MAX {
        let line = read_line(reader, raw)?;
        if line.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(invalid(format!("a bad header {line:?}")));
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                let length = value
                    .parse()
                    .map_err(|_| invalid(format!("a bad length {value:?}")))?;
                head.length = Some(length);
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => head.closes = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Err(invalid("too many headers"))
}

fn read_body(reader: &mut impl BufRead, raw: &mut Vec<u8>, framing: &Framing) -> io::Result<()> {
    match *framing {
        Framing::None => Ok(()),
        Framing::Length(length) => read_exactly(reader, raw, length),
        Framing::UntilClose => {
            let read = reader.take(BODY_BYTES_MAX + 1).read_to_end(raw)?;
            if read as u64 > BODY_BYTES_MAX {
                return Err(invalid("a body too long"));
            }
            Ok(())
        }
        Framing::Chunked => {
            let mut total = 0u64;
            loop {
                let line = read_line(reader, raw)?;
                let digits = line.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(digits, 16)
                    .map_err(|_| invalid(format!("a bad chunk size {line:?}")))?;
                total = total.saturating_add(size);
                if total > BODY_BYTES_MAX {
                    return Err(invalid("a body too long"));
                }
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(reader, raw)?.is_empty() {}
                    return Ok(());
                }
                read_exactly(reader, raw, size)?;
                if !read_line(reader, raw)?.is_empty() {
                    return Err(invalid("a chunk without its line end"));
                }
            }
        }
    }
}

fn read_exactly(reader: &mut impl BufRead, raw: &mut Vec<u8>, length: u64) -> io::Result<()> {
    if length > BODY_BYTES_MAX {
        return Err(invalid("a body too long"));
    }
    let read = reader.take(length).read_to_end(raw)?;
    if (read as u64) < length {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// An answer the proxy makes up, in the XML of an S3 error.
pub(crate) fn made_up_answer(status: u16) -> Vec<u8> {
    let (reason, code) = match status {
        500 => ("Internal Server Error", "InternalError"),
        _ => ("Service Unavailable", "SlowDown"),
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
         <Message>injected by ferrite-chaos</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_read_whole_with_either_framing() {
        let two = b"PUT /b/k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /b/k HTTP/1.1\r\n\r\n";
        let mut reader = &two[..];
        let put = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(put.method, "PUT");
        assert!(put.raw.ends_with(b"\r\n\r\nhello"));
        let get = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(get.method, "GET");
        assert!(read_request(&mut reader).unwrap().is_none());

        let chunked =
            b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n0\r\nT: 1\r\n\r\n";
        let mut reader = &chunked[..];
        let post = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(post.raw, chunked);
    }

    #[test]
    fn answers_are_framed_by_the_request() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let answer = read_response(&mut &head[..], "HEAD").unwrap();
        assert_eq!((answer.status, answer.closes), (200, false));
        let until_close = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let answer = read_response(&mut &until_close[..], "GET").unwrap();
        assert!(answer.closes && answer.raw.ends_with(b"all of it"));
        let made = made_up_answer(503);
        let answer = read_response(&mut &made[..], "PUT").unwrap();
        assert_eq!(answer.status, 503);
        assert_eq!(answer.raw, made);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"GET"[..],
            b"\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n",
            b"PUT / HTTP/1.1\r\nContent-Length: 9\r\n\r\nshort",
            b"no-colon-header\r\n",
        ] {
            assert!(read_request(&mut &bad[..]).is_err(), "{bad:?}");
        }
        for bad in [
            &b"HTTP/1.1 abc\r\n\r\n"[..],
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"",
        ] {
            assert!(read_response(&mut &bad[..], "GET").is_err(), "{bad:?}");
        }
        let long = vec![b'a'; HEAD_BYTES_MAX + 10];
        assert!(read_request(&mut &long[..]).is_err());
    }
}
