//! The HTTP/1.1 subset the health endpoint speaks, as pure functions: parse one request head
//! from a bounded buffer (with `httparse`), route it, and build the response bytes. No I/O here,
//! so every hostile input is unit-tested. Each connection carries one request and is closed
//! after the response (`Connection: close`), which keeps the server's state per connection tiny.

/// The largest request head accepted; a longer one gets 431 and the connection is closed.
pub const MAX_REQUEST: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// Outcome of parsing what has arrived so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Need more bytes.
    Partial,
    Request {
        method: String,
        path: String,
    },
    /// The client sent something that is not a request we can answer; status to send.
    Bad(u16),
}

pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => match (req.method, req.path) {
            (Some(m), Some(p)) => Parsed::Request {
                method: m.to_string(),
                path: p.to_string(),
            },
            _ => Parsed::Bad(400),
        },
        Ok(httparse::Status::Partial) if buf.len() >= MAX_REQUEST => Parsed::Bad(431),
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => Parsed::Bad(431),
        Err(_) => Parsed::Bad(400),
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Route {
    /// `/health`; with `?wait=N`, answered once the document's generation exceeds N.
    Health {
        wait: Option<u64>,
    },
    /// A known path with a query it cannot use (`?wait=soon`).
    BadQuery,
    Livez,
    Metrics,
    NotFound,
    MethodNotAllowed,
}

pub fn route(method: &str, target: &str) -> Route {
    let target = target.split('#').next().unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let known = match path {
        "/health" => Some(match wait_query(query) {
            Ok(wait) => Route::Health { wait },
            Err(()) => Route::BadQuery,
        }),
        "/livez" => Some(Route::Livez),
        "/metrics" => Some(Route::Metrics),
        _ => None,
    };
    match (known, method) {
        (None, _) => Route::NotFound,
        (Some(r), "GET") => r,
        (Some(_), _) => Route::MethodNotAllowed,
    }
}

/// The `wait=N` parameter of a query string; other parameters are ignored (a controller may
/// add its own), a `wait` that is not a number is an error rather than a silent plain poll.
pub fn wait_query(query: &str) -> Result<Option<u64>, ()> {
    let mut wait = None;
    for pair in query.split('&') {
        if let Some(v) = pair.strip_prefix("wait=") {
            wait = Some(v.parse::<u64>().map_err(|_| ())?);
        } else if pair == "wait" {
            return Err(());
        }
    }
    Ok(wait)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A complete response with `Connection: close`.
pub fn response(status: u16, content_type: &str, body: &[u8]) -> Vec<u8> {
    let allow = if status == 405 { "Allow: GET\r\n" } else { "" };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A short plain-text error response.
pub fn error_response(status: u16) -> Vec<u8> {
    let body = format!("{status} {}\n", reason(status));
    response(status, "text/plain; charset=utf-8", body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_and_partial_requests() {
        assert_eq!(
            parse(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"),
            Parsed::Request {
                method: "GET".into(),
                path: "/health".into()
            }
        );
        assert_eq!(
            parse(b"GET /health HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Partial
        );
        assert_eq!(parse(b""), Parsed::Partial);
    }

    #[test]
    fn hostile_requests_are_refused() {
        assert_eq!(parse(b"\x00\x01\x02 garbage\r\n\r\n"), Parsed::Bad(400));
        let mut huge = b"GET /health HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST + 10, b'a');
        assert_eq!(parse(&huge), Parsed::Bad(431));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse(&many), Parsed::Bad(431));
    }

    #[test]
    fn routes_per_contract() {
        let plain = Route::Health { wait: None };
        assert_eq!(route("GET", "/health"), plain);
        assert_eq!(route("GET", "/health?x=1"), plain);
        assert_eq!(
            route("GET", "/health?wait=7"),
            Route::Health { wait: Some(7) }
        );
        assert_eq!(route("GET", "/health?wait=x"), Route::BadQuery);
        assert_eq!(route("POST", "/health?wait=1"), Route::MethodNotAllowed);
        assert_eq!(route("GET", "/livez"), Route::Livez);
        assert_eq!(route("GET", "/metrics"), Route::Metrics);
        assert_eq!(route("POST", "/health"), Route::MethodNotAllowed);
        assert_eq!(route("DELETE", "/metrics"), Route::MethodNotAllowed);
        assert_eq!(route("GET", "/"), Route::NotFound);
        assert_eq!(route("POST", "/nope"), Route::NotFound);
    }

    #[test]
    fn wait_query_takes_a_generation_number() {
        assert_eq!(wait_query(""), Ok(None));
        assert_eq!(wait_query("wait=0"), Ok(Some(0)));
        assert_eq!(wait_query("a=b&wait=42&c"), Ok(Some(42)));
        assert_eq!(wait_query("wait=18446744073709551615"), Ok(Some(u64::MAX)));
        for bad in [
            "wait=",
            "wait",
            "wait=-1",
            "wait=1.5",
            "wait=18446744073709551616",
        ] {
            assert_eq!(wait_query(bad), Err(()), "{bad}");
        }
    }

    #[test]
    fn responses_have_length_and_close() {
        let r = String::from_utf8(response(200, "application/json", b"{}")).unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(r.contains("Content-Length: 2\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n{}"));
        let r = String::from_utf8(error_response(405)).unwrap();
        assert!(r.contains("Allow: GET\r\n"));
    }
}
