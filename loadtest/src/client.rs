//! One keep-alive HTTP/1.1 connection per virtual user, on hyper's connection API: no pool,
//! no URL parsing per request, headers prepared up front.

use std::net::SocketAddr;

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A node to send requests to.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
}

impl Target {
    /// Parses `http://host:port` (or `host:port`).
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let authority = url.trim_start_matches("http://").trim_end_matches('/');
        let addr: SocketAddr = authority
            .parse()
            .or_else(|_| {
                std::net::ToSocketAddrs::to_socket_addrs(authority)
                    .map_err(|e| anyhow!(e))?
                    .next()
                    .ok_or_else(|| anyhow!("{authority} resolves to nothing"))
            })
            .with_context(|| format!("target {url}"))?;
        Ok(Target { addr, host: HeaderValue::from_str(authority)? })
    }
}

pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    user_agent: HeaderValue,
}

/// A request, prepared once and sent many times.
#[derive(Clone)]
pub struct Call {
    pub method: Method,
    pub path: &'static str,
    /// The `Authorization` header.
    pub bearer: Option<HeaderValue>,
    /// The body and its content type.
    pub json: Option<(Bytes, &'static str)>,
}

impl Call {
    pub fn post_json(path: &'static str, body: &serde_json::Value) -> Call {
        Call {
            method: Method::POST,
            path,
            bearer: None,
            json: Some((Bytes::from(body.to_string()), "application/json")),
        }
    }

    pub fn get(path: &'static str) -> Call {
        Call { method: Method::GET, path, bearer: None, json: None }
    }

    pub fn with_bearer(method: Method, path: &'static str, token: &str) -> Call {
        let bearer = HeaderValue::from_str(&format!("Bearer {token}")).expect("tokens are header-safe");
        Call { method, path, bearer: Some(bearer), json: None }
    }

    /// A form POST with HTTP Basic credentials (`basic`: the base64 of `id:secret`).
    pub fn post_form(path: &'static str, basic: &str, form: String) -> Call {
        let authorization = HeaderValue::from_str(&format!("Basic {basic}")).expect("base64 is header-safe");
        Call {
            method: Method::POST,
            path,
            bearer: Some(authorization),
            json: Some((Bytes::from(form), "application/x-www-form-urlencoded")),
        }
    }
}

impl Conn {
    pub fn new(target: Target, user_agent: &str) -> Conn {
        Conn { target, sender: None, user_agent: HeaderValue::from_str(user_agent).expect("header-safe user agent") }
    }

    async fn connect(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = TcpStream::connect(self.target.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just connected"))
    }

    /// Sends `call`; returns the status and the whole body. Reconnects once if the server
    /// closed the kept-alive connection.
    pub async fn send(&mut self, call: &Call) -> anyhow::Result<(StatusCode, Bytes)> {
        match self.try_send(call).await {
            Ok(answer) => Ok(answer),
            Err(_) => {
                self.sender = None;
                self.try_send(call).await
            }
        }
    }

    async fn try_send(&mut self, call: &Call) -> anyhow::Result<(StatusCode, Bytes)> {
        let host = self.target.host.clone();
        let agent = self.user_agent.clone();
        let sender = self.connect().await?;
        sender.ready().await?;
        let mut request =
            Request::builder().method(call.method.clone()).uri(call.path).header(HOST, host).header(USER_AGENT, agent);
        if let Some(bearer) = &call.bearer {
            request = request.header(AUTHORIZATION, bearer.clone());
        }
        let body = match &call.json {
            Some((body, content_type)) => {
                request = request.header(CONTENT_TYPE, *content_type);
                Full::new(body.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let response = sender.send_request(request.body(body)?).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }
}
