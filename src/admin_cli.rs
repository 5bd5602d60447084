//! `tessera cluster …`: a thin client of the admin API on a node's peer listener; `tessera
//! keys …`: of the key administration on a node's public API.

use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::cli::{ClientsArgs, ClientsCommand, ClusterArgs, ClusterCommand, KeysArgs, KeysCommand};

/// The admin token: `--token` (or `TESSERA_ADMIN_TOKEN`), else the configured one.
fn admin_token(given: Option<String>, configured: Option<String>) -> anyhow::Result<String> {
    given.or(configured).context("an admin token is needed: --token or TESSERA_ADMIN_TOKEN")
}

/// Runs `command` on a one-thread runtime and prints the text it returns.
fn print_from(command: impl std::future::Future<Output = anyhow::Result<String>>) -> anyhow::Result<()> {
    let text = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(command)?;
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
    Ok(())
}

/// The admin routes of a node's public API.
struct PublicApi {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl PublicApi {
    fn new(url: &str, token: String) -> anyhow::Result<PublicApi> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(PublicApi { http, base: url.trim_end_matches('/').to_string(), token })
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    /// Sends `request`; the JSON answer (`Null` for none), or the problem's detail as an error.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", body.get("detail").and_then(Value::as_str).unwrap_or("request failed"));
        }
        Ok(body)
    }
}

/// `tessera clients create|list|delete`.
pub fn clients(args: ClientsArgs, configured_token: Option<String>) -> anyhow::Result<()> {
    let api = PublicApi::new(&args.url, admin_token(args.token, configured_token)?)?;
    print_from(async move {
        Ok(match &args.command {
            ClientsCommand::Create { name } => {
                let request = api.request(reqwest::Method::POST, "/v1/admin/clients");
                let body = api.send(request.json(&serde_json::json!({ "name": name }))).await?;
                format!(
                    "client_id={}\nclient_secret={}\n# the secret is shown only now; Tessera keeps a digest\n",
                    num(&body["client_id"]),
                    num(&body["client_secret"])
                )
            }
            ClientsCommand::List => {
                let body = api.send(api.request(reqwest::Method::GET, "/v1/admin/clients")).await?;
                let mut out = format!("{:<26} {:<21} {}\n", "client_id", "created", "name");
                for c in body["clients"].as_array().into_iter().flatten() {
                    out +=
                        &format!("{:<26} {:<21} {}\n", num(&c["client_id"]), when(&c["created_at"]), num(&c["name"]));
                }
                out
            }
            ClientsCommand::Delete { id } => {
                api.send(api.request(reqwest::Method::DELETE, &format!("/v1/admin/clients/{id}"))).await?;
                format!("deleted {id}\n")
            }
        })
    })
}

/// `tessera keys list|rotate`.
pub fn keys(args: KeysArgs, configured_token: Option<String>) -> anyhow::Result<()> {
    let api = PublicApi::new(&args.url, admin_token(args.token, configured_token)?)?;
    print_from(async move {
        let request = match &args.command {
            KeysCommand::List { .. } => api.request(reqwest::Method::GET, "/v1/admin/keys"),
            KeysCommand::Rotate { revoke_current, kid } => api
                .request(reqwest::Method::POST, "/v1/admin/keys/rotate")
                .json(&serde_json::json!({ "revoke_current": revoke_current, "kid": kid })),
        };
        let body = api.send(request).await?;
        Ok(match args.command {
            KeysCommand::List { json: true } => format!("{}\n", serde_json::to_string_pretty(&body)?),
            KeysCommand::List { json: false } => key_table(&body),
            KeysCommand::Rotate { .. } if body["rotated"] == true => format!(
                "{} {} → {} now signs\n",
                if body["revoked"] == true { "revoked" } else { "retired" },
                num(&body["replaced"]),
                num(&body["active"])
            ),
            KeysCommand::Rotate { .. } => {
                format!("already rotated: {} signs (nothing changed)\n", num(&body["active"]))
            }
        })
    })
}

/// Unix seconds as RFC 3339 UTC, or `-`.
fn when(v: &Value) -> String {
    match v.as_u64() {
        Some(secs) => humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
        None => "-".to_string(),
    }
}

fn key_table(body: &Value) -> String {
    let mut out = format!(
        "{:<44} {:<8} {:<20} {:<20} {:<20} {}\n",
        "kid", "state", "published", "activated", "retired", "next transition"
    );
    for key in body["keys"].as_array().into_iter().flatten() {
        out += &format!(
            "{:<44} {:<8} {:<20} {:<20} {:<20} {}\n",
            num(&key["kid"]),
            num(&key["state"]),
            when(&key["published_at"]),
            when(&key["activated_at"]),
            when(&key["retired_at"]),
            when(&key["next_transition_at"])
        );
    }
    out
}

pub fn run(args: ClusterArgs, configured_token: Option<String>) -> anyhow::Result<()> {
    let token = admin_token(args.token, configured_token)?;
    print_from(async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        let base = format!("http://{}", args.node.trim_start_matches("http://"));
        let (method, path, body) = match &args.command {
            ClusterCommand::Init => (reqwest::Method::POST, "/admin/init".to_string(), None),
            ClusterCommand::Status { .. } => (reqwest::Method::GET, "/admin/status".to_string(), None),
            ClusterCommand::AddLearner { id, peer_addr, public_addr } => (
                reqwest::Method::POST,
                "/admin/learners".to_string(),
                Some(serde_json::json!({ "id": id, "peer_addr": peer_addr, "public_addr": public_addr })),
            ),
            ClusterCommand::Promote { id } => (reqwest::Method::POST, format!("/admin/voters/{id}"), None),
            ClusterCommand::Remove { id } => (reqwest::Method::DELETE, format!("/admin/members/{id}"), None),
            ClusterCommand::Elect => (reqwest::Method::POST, "/admin/elect".to_string(), None),
            ClusterCommand::Transfer { to } => (reqwest::Method::POST, format!("/admin/transfer/{to}"), None),
        };
        let mut request = client.request(method, format!("{base}{path}")).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.with_context(|| format!("cannot reach {base}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{status}: {}", body.get("detail").and_then(Value::as_str).unwrap_or("request failed"));
        }
        let text = match args.command {
            ClusterCommand::Status { json: true } => format!("{}\n", serde_json::to_string_pretty(&body)?),
            ClusterCommand::Status { json: false } => summary(&body),
            ClusterCommand::Init => {
                let done = body["initialized"] == true;
                format!("{}\n", if done { "initialised a new cluster" } else { "already part of a cluster" })
            }
            ClusterCommand::Transfer { to } => {
                format!("node {to} leads (took {} ms)\n", num(&body["took_ms"]))
            }
            ClusterCommand::Elect => "election started\n".to_string(),
            _ => format!("done\n{}", summary(&body["status"])),
        };
        Ok(text)
    })
}

fn num(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string().trim_matches('"').to_string(),
    }
}

/// The cluster view, readably.
fn summary(s: &Value) -> String {
    let mut out = String::new();
    out += &format!(
        "node {} is {} in term {}; leader: {}\n",
        num(&s["node_id"]),
        num(&s["role"]),
        num(&s["term"]),
        num(&s["leader_id"])
    );
    out += &format!(
        "log: last {}  committed {}  applied {}  snapshot {} (age {} s)  purged {}\n",
        num(&s["last_log_index"]),
        num(&s["committed"]),
        num(&s["applied"]),
        num(&s["snapshot_index"]),
        num(&s["snapshot_age_seconds"]),
        num(&s["purged_index"])
    );
    out += &format!("leader contact: {} s ago\n", num(&s["since_leader_contact_seconds"]));
    if s["actors"].is_object() {
        out += &format!(
            "actors: {} identities, {} session families, {} client networks\n",
            num(&s["actors"]["identities"]),
            num(&s["actors"]["families"]),
            num(&s["actors"]["clients"])
        );
    }
    let store = &s["store"];
    out += &format!(
        "store: {} reachable={} watermark {} lag {} entries / {} s, last flush {} s ago\n",
        num(&store["kind"]),
        num(&store["reachable"]),
        num(&store["watermark"]),
        num(&store["lag_entries"]),
        num(&store["lag_seconds"]),
        num(&store["last_flush_age_seconds"])
    );
    let proposer = &s["proposer"];
    out += &format!(
        "proposer: queue {} entries {} transactions {} recent batches {}\n",
        num(&proposer["queue_depth"]),
        num(&proposer["entries"]),
        num(&proposer["transactions"]),
        proposer["recent_batch_sizes"]
    );
    out += "members:\n  id  role      peer                   public                 matched  lag    contact(s)\n";
    for m in s["members"].as_array().into_iter().flatten() {
        out += &format!(
            "  {:<3} {:<9} {:<22} {:<22} {:<8} {:<6} {}\n",
            num(&m["id"]),
            num(&m["role"]),
            num(&m["peer_addr"]),
            num(&m["public_addr"]),
            num(&m["matched_index"]),
            num(&m["replication_lag"]),
            num(&m["since_contact_seconds"])
        );
    }
    out
}
