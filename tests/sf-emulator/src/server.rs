//! Accept loop, connections (HTTP or HTTPS), request limits, fault application, gzip, routing.

use crate::faults::{status_error, Disruption};
use crate::http::{Request, Response};
use crate::state::Org;
use crate::{admin, oauth, rest, soap};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio_rustls::TlsAcceptor;

pub const MAX_BODY: usize = 1024 * 1024;
pub const MAX_URI: usize = 16 * 1024;
pub const MAX_HEADERS: usize = 16 * 1024;
/// Default: a request body that stops arriving for this long is answered with 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Response body that can stop half-way with an error (the truncation fault).
pub struct OutBody {
    data: Option<Bytes>,
    fail: bool,
    /// Pause between the partial data and the error, so the partial data reaches the peer.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for OutBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if self.fail {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.fail = false;
            return Poll::Ready(Some(Err(std::io::Error::other(
                "truncated by fault injection",
            ))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.fail
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.fail) {
            (Some(d), false) => SizeHint::with_exact(d.len() as u64),
            (None, false) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

pub async fn run(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    org: Arc<Org>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(connection(stream, peer, tls.clone(), org.clone(), shutdown.clone()));
            }
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    org: Arc<Org>,
    mut shutdown: watch::Receiver<bool>,
) {
    // A second handle on the socket so the reset fault can set SO_LINGER 0 before closing.
    let Ok(std_stream) = stream.into_std() else {
        return;
    };
    let Ok(handle) = std_stream.try_clone() else {
        return;
    };
    let Ok(stream) = TcpStream::from_std(std_stream) else {
        return;
    };
    let reset = Arc::new(Notify::new());
    let svc_reset = reset.clone();
    let service = service_fn(move |req| {
        let org = org.clone();
        let reset = svc_reset.clone();
        async move { Ok::<_, Infallible>(handle_request(&org, peer, req, &reset).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .keep_alive(true)
        .max_buf_size(64 * 1024)
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let served = async {
        match tls {
            Some(acceptor) => {
                if let Ok(Ok(s)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await
                {
                    let _ = builder.serve_connection(TokioIo::new(s), service).await;
                }
            }
            None => {
                let _ = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            }
        }
    };
    tokio::select! {
        _ = served => {}
        _ = reset.notified() => {
            let _ = socket2::SockRef::from(&handle).set_linger(Some(Duration::ZERO));
        }
        _ = shutdown.changed() => {}
    }
}

fn to_hyper(r: Response, truncate: bool) -> hyper::Response<OutBody> {
    let mut b = hyper::Response::builder().status(r.status);
    for (k, v) in &r.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let full_len = r.body.len();
    let body = if truncate && full_len > 0 {
        b = b.header("Content-Length", full_len.to_string());
        OutBody {
            data: Some(r.body.slice(..full_len / 2)),
            fail: true,
            pause: None,
        }
    } else {
        OutBody {
            data: Some(r.body),
            fail: false,
            pause: None,
        }
    };
    b.body(body).unwrap_or_else(|_| {
        hyper::Response::new(OutBody {
            data: None,
            fail: false,
            pause: None,
        })
    })
}

fn plain_error(status: u16, code: &str, message: &str) -> Response {
    Response::json(status, &json!([{"message": message, "errorCode": code}]))
}

async fn handle_request(
    org: &Org,
    peer: SocketAddr,
    req: hyper::Request<Incoming>,
    reset: &Notify,
) -> hyper::Response<OutBody> {
    let path = req.uri().path();
    let api = path.starts_with("/services/data/") || path.starts_with("/services/Soap/");
    // Admin calls are not Salesforce traffic: they stay out of the counters.
    let _in_flight = (!path.starts_with("/__emulator")).then(|| org.stats.begin(api));
    let (parts, body) = req.into_parts();
    let uri_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return to_hyper(
            plain_error(414, "URI_TOO_LONG", "The request URI is too long"),
            false,
        );
    }
    let header_len: usize = parts
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_len + uri_len > MAX_HEADERS {
        return to_hyper(
            plain_error(
                431,
                "REQUEST_HEADER_FIELDS_TOO_LARGE",
                "Request header fields too large",
            ),
            false,
        );
    }
    let too_large = || {
        to_hyper(
            plain_error(
                413,
                "REQUEST_ENTITY_TOO_LARGE",
                "Request entity too large: the maximum is 1048576 bytes",
            ),
            false,
        )
    };
    let declared = parts
        .headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return too_large();
    }
    let collect = http_body_util::Limited::new(body, MAX_BODY).collect();
    let body_timeout = org.runtime().body_timeout;
    let Ok(collected) = tokio::time::timeout(body_timeout, collect).await else {
        let mut r = to_hyper(
            plain_error(408, "REQUEST_TIMEOUT", "Timed out reading the request body"),
            false,
        );
        r.headers_mut().insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
        return r;
    };
    let mut body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => {
            return to_hyper(
                plain_error(400, "BAD_REQUEST", "Could not read the request body"),
                false,
            )
        }
    };
    let gz_in = parts
        .headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    if gz_in {
        use std::io::Read;
        let mut out = vec![];
        let dec = flate2::read::GzDecoder::new(&body[..]);
        match dec.take(MAX_BODY as u64 + 1).read_to_end(&mut out) {
            Ok(n) if n > MAX_BODY => return too_large(),
            Ok(_) => body = Bytes::from(out),
            Err(_) => {
                return to_hyper(
                    plain_error(400, "JSON_PARSER_ERROR", "Request body is not valid gzip"),
                    false,
                )
            }
        }
    }
    let request = Request {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        raw_query: parts.uri.query().unwrap_or("").to_string(),
        headers: parts.headers,
        body,
        peer,
    };
    let plan = org.faults.plan(&request.path);
    // The request is handled (and charged against the limits) on arrival; latency delays the
    // answer, so a slow request counts as long-running while it waits.
    let resp = match plan.disruption {
        Disruption::Reset | Disruption::Status(_) => Response::empty(500),
        // A handler bug must cost one 500, not the connection or the server.
        _ => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch(org, &request, plan.dead_tokens)
        }))
        .unwrap_or_else(|_| {
            let (code, msg) = status_error(500);
            plain_error(500, &code, &msg)
        }),
    };
    if !plan.delay.is_zero() {
        tokio::time::sleep(plan.delay).await;
    }
    let resp = match plan.disruption {
        Disruption::Reset => {
            reset.notify_one();
            std::future::pending::<()>().await;
            Response::empty(500)
        }
        Disruption::Status(s) => {
            let (code, msg) = status_error(s);
            plain_error(s, &code, &msg)
        }
        _ => resp,
    };
    let resp = if plan.disruption == Disruption::Garbage {
        Response { body: Bytes::from_static(b"<html><head><title>Error</title></head><body>\x3c!-- sf-emulator garbage --\x3e upstream connect error or disconnect/reset before headers\0\x7f"), ..resp }
    } else {
        resp
    };
    let wants_gzip = request.header("accept-encoding").is_some_and(|v| {
        v.split(',').any(|e| {
            e.trim()
                .split(';')
                .next()
                .is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        })
    });
    let resp = if wants_gzip && !resp.body.is_empty() {
        gzip(resp)
    } else {
        resp
    };
    to_hyper(resp, plan.disruption == Disruption::Truncate)
}

fn gzip(mut r: Response) -> Response {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if enc.write_all(&r.body).is_err() {
        return r;
    }
    match enc.finish() {
        Ok(z) => {
            r.body = Bytes::from(z);
            r.headers.push(("Content-Encoding".into(), "gzip".into()));
            r.headers.push(("Vary".into(), "Accept-Encoding".into()));
            r
        }
        Err(_) => r,
    }
}

/// Routes one request to its handler.
pub fn dispatch(org: &Org, req: &Request, dead_tokens: bool) -> Response {
    let path = req.path.as_str();
    let m = &req.method;
    if path.starts_with("/__emulator") {
        return admin::handle(org, req);
    }
    if let Some(op) = path.strip_prefix("/services/oauth2/") {
        let op = op.trim_end_matches('/');
        org.stats.endpoint(&format!("oauth_{op}"));
        return match (op, m.as_str()) {
            ("token", "POST") => oauth::token(org, req, dead_tokens),
            ("revoke", "POST" | "GET") => oauth::revoke(org, req),
            ("introspect", "POST") => oauth::introspect(org, req),
            ("userinfo", "GET" | "POST") => oauth::identity(org, req, true),
            ("token" | "introspect", _) => {
                Response::oauth_error(405, "invalid_request", "must use HTTP POST")
            }
            _ => plain_error(404, "NOT_FOUND", "The requested resource does not exist"),
        };
    }
    if path.starts_with("/id/") && m == hyper::Method::GET {
        org.stats.endpoint("identity");
        return oauth::identity(org, req, false);
    }
    if path == "/services/data" || path.starts_with("/services/data/") {
        return rest::handle(org, req);
    }
    if path.starts_with("/services/Soap/u/") {
        return soap::handle(org, req);
    }
    if path.starts_with("/telephony/") {
        return crate::telephony::handle(org, req);
    }
    plain_error(404, "NOT_FOUND", "The requested resource does not exist")
}
