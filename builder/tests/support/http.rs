//! A scriptable HTTP/1.1 server on 127.0.0.1 for download tests.
//!
//! Each request takes the next [`Reply`] from the script (then the fallback),
//! is recorded, and is answered on its own connection (`Connection: close`).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// What to answer to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The payload, honouring `Range: bytes=N-` (206 + Content-Range; 416 past the end).
    Good,
    /// Like `Good`, but the connection is closed after this many body bytes.
    CutAfter(usize),
    /// 200, `Content-Type: text/html`, a bot-check page.
    Html,
    /// 200, `application/octet-stream`, but the body is an HTML page.
    HtmlBody,
    /// This status with a short text body.
    Status(u16),
    /// 200 with these bytes instead of the payload.
    Bytes(Vec<u8>),
    /// 200 with the whole payload, whatever Range asked for.
    IgnoreRange,
    /// No answer for this long, then the connection is closed.
    Stall(Duration),
}

/// A request as received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Range` header.
    pub fn range(&self) -> Option<&str> {
        self.header("range")
    }
}

#[derive(Debug)]
struct State {
    script: VecDeque<Reply>,
    fallback: Reply,
    requests: Vec<Request>,
}

/// The running server; it lives until the test process exits.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    /// Serves `payload` per `script`, then `Reply::Good`.
    pub fn start(payload: Vec<u8>, script: Vec<Reply>) -> Self {
        Self::with_fallback(payload, script, Reply::Good)
    }

    /// Serves `payload` per `script`, then `fallback` for every later request.
    pub fn with_fallback(payload: Vec<u8>, script: Vec<Reply>, fallback: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            fallback,
            requests: Vec::new(),
        }));
        let payload = Arc::new(payload);
        let shared = Arc::clone(&state);
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, payload) = (Arc::clone(&shared), Arc::clone(&payload));
                thread::spawn(move || serve(stream, &state, &payload));
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.state).requests.clone()
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

/// `bytes=N-` → N.
fn range_start(req: &Request) -> Option<usize> {
    req.range()?
        .strip_prefix("bytes=")?
        .strip_suffix('-')?
        .parse()
        .ok()
}

fn serve(mut stream: TcpStream, state: &Mutex<State>, payload: &[u8]) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    let reply = {
        let mut st = lock(state);
        st.requests.push(req.clone());
        let fallback = st.fallback.clone();
        st.script.pop_front().unwrap_or(fallback)
    };
    let octet = "application/octet-stream";
    let page = "<!DOCTYPE html>\n<html><head><title>Just a moment...</title></head>\
                <body>Checking your browser</body></html>\n";
    let _ = match reply {
        Reply::Good => ranged(&mut stream, &req, payload, None),
        Reply::CutAfter(k) => ranged(&mut stream, &req, payload, Some(k)),
        Reply::Html => respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            &[],
            page.as_bytes(),
        ),
        Reply::HtmlBody => {
            let body = format!("\r\n   {page}");
            respond(&mut stream, "200 OK", octet, &[], body.as_bytes())
        }
        Reply::Status(code) => {
            let status = format!("{code} Scripted");
            respond(&mut stream, &status, "text/plain", &[], b"scripted error\n")
        }
        Reply::Bytes(bytes) => respond(&mut stream, "200 OK", octet, &[], &bytes),
        Reply::IgnoreRange => respond(&mut stream, "200 OK", octet, &[], payload),
        Reply::Stall(d) => {
            thread::sleep(d);
            Ok(())
        }
    };
    let _ = stream.shutdown(Shutdown::Both);
}

/// Serves the payload from the requested offset; `cut` = body bytes sent before closing.
fn ranged(
    stream: &mut TcpStream,
    req: &Request,
    payload: &[u8],
    cut: Option<usize>,
) -> std::io::Result<()> {
    let octet = "application/octet-stream";
    let len = payload.len();
    let (status, start, extra) = match range_start(req) {
        None => ("200 OK", 0, Vec::new()),
        Some(s) if s >= len => {
            let cr = format!("bytes */{len}");
            return respond(
                stream,
                "416 Range Not Satisfiable",
                "text/plain",
                &[("Content-Range", &cr)],
                b"",
            );
        }
        Some(s) => (
            "206 Partial Content",
            s,
            vec![format!("bytes {s}-{}/{len}", len - 1)],
        ),
    };
    let body = &payload[start..];
    let headers: Vec<(&str, &str)> = extra
        .iter()
        .map(|v| ("Content-Range", v.as_str()))
        .collect();
    match cut {
        None => respond(stream, status, octet, &headers, body),
        Some(k) => {
            head(stream, status, octet, &headers, body.len())?;
            stream.write_all(&body[..k.min(body.len())])?;
            stream.flush()
        }
    }
}

fn head(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    len: usize,
) -> std::io::Result<()> {
    let mut h = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Accept-Ranges: bytes\r\nConnection: close\r\n"
    );
    for (n, v) in headers {
        h.push_str(&format!("{n}: {v}\r\n"));
    }
    h.push_str("\r\n");
    stream.write_all(h.as_bytes())
}

fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    head(stream, status, content_type, headers, body.len())?;
    stream.write_all(body)?;
    stream.flush()
}
