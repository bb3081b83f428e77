//! A minimal blocking HTTP GET for tests (JSON bodies from the simulator and the DCN).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

/// GETs `path` from `address` and parses the body as JSON; panics with the response on failure.
pub fn get_json(address: &str, path: &str) -> serde_json::Value {
    get_json_auth(address, path, None)
}

/// Like [`get_json`], with `Authorization: Bearer <token>` when a token is given.
pub fn get_json_auth(address: &str, path: &str, token: Option<&str>) -> serde_json::Value {
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    request(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n"),
        path,
    )
}

/// POSTs the JSON `body` to `path` and parses the answer as JSON.
pub fn post_json(address: &str, path: &str, body: &serde_json::Value) -> serde_json::Value {
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    request(address, &format!("{head}{body}"), path)
}

fn request(address: &str, raw: &str, path: &str) -> serde_json::Value {
    let (_, head, body) = exchange(address, raw.as_bytes());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {head}\n{body}"))
}

/// Sends a raw HTTP/1.1 request (which must ask for `Connection: close`); returns the status,
/// the head and the (de-chunked) body.
pub fn exchange(address: &str, raw: &[u8]) -> (u16, String, String) {
    let mut stream =
        TcpStream::connect(address).unwrap_or_else(|e| panic!("connect {address}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream.write_all(raw).expect("request");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("response");
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no body in {text}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    (status, head.to_owned(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}
