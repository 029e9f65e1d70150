//! The hostile requests of the load ([`Hostile`]): each sent raw over TCP, each with the
//! refusal it must get.

use super::{COLLECTION, RAW_READ_TIMEOUT, Rng, Shared, Tally};
use blindsight_proto as wire;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The hostile requests of the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hostile {
    /// A segment upload with a wrong token declaring a 300 MB body (64 KiB sent).
    WrongTokenLargeBody,
    /// A search of a collection that does not exist (with a valid token of another).
    UnknownCollection,
    /// Random bytes as the body of a search, ingest or payload request, right token.
    GarbageBody,
    /// A payload request naming one id 5000 times.
    RepeatedIds,
    /// A segment upload with the right token declaring 3 GB (over the route's limit).
    OversizedLength,
    /// A collection creation without credentials declaring a 200 MB body.
    UnauthenticatedCreate,
    /// A request abandoned half-way (in its headers or its body).
    HalfSent,
}

impl Hostile {
    /// Every kind.
    pub const ALL: [Hostile; 7] = [
        Hostile::WrongTokenLargeBody,
        Hostile::UnknownCollection,
        Hostile::GarbageBody,
        Hostile::RepeatedIds,
        Hostile::OversizedLength,
        Hostile::UnauthenticatedCreate,
        Hostile::HalfSent,
    ];

    /// Short name (JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Hostile::WrongTokenLargeBody => "wrong_token_large_body",
            Hostile::UnknownCollection => "unknown_collection",
            Hostile::GarbageBody => "garbage_body",
            Hostile::RepeatedIds => "repeated_ids",
            Hostile::OversizedLength => "oversized_length",
            Hostile::UnauthenticatedCreate => "unauthenticated_create",
            Hostile::HalfSent => "half_sent",
        }
    }

    /// The answer it must get.
    pub fn expected(self) -> &'static str {
        match self {
            Hostile::WrongTokenLargeBody | Hostile::UnauthenticatedCreate => "401 or closed",
            Hostile::UnknownCollection => "401",
            Hostile::GarbageBody => "400 (or 503)",
            Hostile::RepeatedIds => "200, one payload (or 503)",
            Hostile::OversizedLength => "413 or closed (or 503)",
            Hostile::HalfSent => "nothing (sent, dropped)",
        }
    }

    /// Whether the server may close the connection instead of answering (a refusal from
    /// the headers while the client is still sending a large body).
    fn may_close(self) -> bool {
        matches!(
            self,
            Hostile::WrongTokenLargeBody
                | Hostile::UnauthenticatedCreate
                | Hostile::OversizedLength
        )
    }

    /// Whether the route takes an admission permit first (so 503 is a legitimate answer).
    fn admitted(self) -> bool {
        matches!(
            self,
            Hostile::GarbageBody | Hostile::RepeatedIds | Hostile::OversizedLength
        )
    }

    fn status_ok(self, status: u16) -> bool {
        match self {
            Hostile::WrongTokenLargeBody
            | Hostile::UnknownCollection
            | Hostile::UnauthenticatedCreate => status == 401,
            Hostile::GarbageBody => status == 400,
            Hostile::RepeatedIds => status == 200,
            Hostile::OversizedLength => status == 413,
            Hostile::HalfSent => false,
        }
    }
}

/// The status line of a raw exchange, or `None` if the server closed the connection.
pub(super) fn raw_exchange(
    addr: SocketAddr,
    head: &str,
    body: &[u8],
) -> std::io::Result<Option<u16>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(RAW_READ_TIMEOUT))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(head.as_bytes())?;
    // the server may refuse from the headers and close before the body is in
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(2).any(|w| w == b"\r\n") || buf.len() > 8192 {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                break;
            }
            Err(e) => return Err(e),
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let line = String::from_utf8_lossy(&buf);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "not an HTTP status line: {:?}",
                    line.chars().take(80).collect::<String>()
                ),
            )
        })?;
    Ok(Some(status))
}

pub(super) fn hostile_op(
    shared: &Shared<'_>,
    http: &reqwest::blocking::Client,
    kind: Hostile,
    rng: &mut Rng,
    tally: &mut Tally,
) {
    tally.count += 1;
    let started = Instant::now();
    let c = COLLECTION;
    let token = &shared.token;
    let first_chunk = vec![0u8; 64 << 10];
    let outcome: Result<Option<u16>, String> = match kind {
        Hostile::WrongTokenLargeBody => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/{c}/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong{:016x}\r\nContent-Length: 300000000\r\nConnection: close\r\n\r\n",
                rng.next()
            ),
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::UnknownCollection => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/nope-{:08x}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n",
                rng.next() as u32
            ),
            &[0u8; 1024],
        )
        .map_err(|e| e.to_string()),
        Hostile::GarbageBody => {
            let route = ["search", "segments", "payloads"][rng.below(3)];
            let body = rng.bytes(4096);
            raw_exchange(
                shared.addr,
                &format!(
                    "POST /v1/collections/{c}/{route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                &body,
            )
            .map_err(|e| e.to_string())
        }
        Hostile::RepeatedIds => {
            let id = shared.ids[rng.below(shared.ids.len())].0;
            http.post(format!("{}/v1/collections/{c}/payloads", shared.base))
                .bearer_auth(token)
                .body(wire::encode_ids(&vec![id; 5000]))
                .send()
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let status = r.status().as_u16();
                    let body = r.bytes().map_err(|e| e.to_string())?;
                    if status == 200 {
                        let batch = wire::decode_payloads(&body).map_err(|e| e.to_string())?;
                        if batch.found.len() != 1 || batch.found[0].0 != id {
                            return Err(format!(
                                "5000 copies of one id: {} payloads back",
                                batch.found.len()
                            ));
                        }
                    }
                    Ok(Some(status))
                })
        }
        Hostile::OversizedLength => raw_exchange(
            shared.addr,
            &format!(
                "POST /v1/collections/{c}/segments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 3000000000\r\nConnection: close\r\n\r\n"
            ),
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::UnauthenticatedCreate => raw_exchange(
            shared.addr,
            "POST /v1/collections HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\nConnection: close\r\n\r\n",
            &first_chunk,
        )
        .map_err(|e| e.to_string()),
        Hostile::HalfSent => {
            let head = if rng.below(2) == 0 {
                // headers cut off
                format!("POST /v1/collections/{c}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bea")
            } else {
                // body cut off
                format!(
                    "POST /v1/collections/{c}/search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n{}",
                    "x".repeat(1000)
                )
            };
            TcpStream::connect_timeout(&shared.addr, Duration::from_secs(5))
                .and_then(|mut s| s.write_all(head.as_bytes()))
                .map(|()| None)
                .map_err(|e| e.to_string())
        }
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    match outcome {
        Ok(None) if kind == Hostile::HalfSent => {
            tally.as_expected += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(None) if kind.may_close() => {
            tally.closed_early += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(503)) if kind.admitted() => {
            tally.busy += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(s)) if kind.status_ok(s) => {
            tally.as_expected += 1;
            tally.latencies_ms.push(ms);
        }
        Ok(Some(s)) => tally.error(format!("{}: answered {s}", kind.name())),
        Ok(None) => tally.error(format!("{}: connection closed, no answer", kind.name())),
        Err(e) => tally.error(format!("{}: {e}", kind.name())),
    }
}
