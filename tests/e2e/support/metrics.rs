//! A DCN's Prometheus `/metrics`, read the way an operator's scraper would (with the cluster
//! secret), and the value of one series in it.

use super::http::exchange;
use super::process::machine_token;

/// The DCN's `/metrics` text (the roles of a test share this machine's token).
pub fn metrics(dcn: &str) -> String {
    let token = machine_token();
    let raw = format!(
        "GET /metrics HTTP/1.1\r\nHost: {dcn}\r\nx-ubdcc-cluster-secret: {token}\r\nConnection: close\r\n\r\n"
    );
    let (status, head, body) = exchange(dcn, raw.as_bytes());
    assert_eq!(status, 200, "{head}\n{body}");
    body
}

/// The value of the metric line starting with `series` (name and labels), if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
