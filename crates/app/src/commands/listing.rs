//! `blindsight info` and `blindsight list`: what a collection is and holds, and which
//! collections this client holds tokens for on a server.

use super::Env;
use super::output::{Output, fit, human_bytes, name_column, print_json};
use crate::errors::Result;
use blindsight_client::names;
use blindsight_client::remote::Remote;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// Images a page of `list --images` shows by default.
pub const DEFAULT_PAGE: usize = 100;

/// `blindsight info`: the collection's kind, parameters, images, segments and bytes.
pub fn info(env: &Env, output: Output) -> Result<()> {
    let (_server, remote) = env.connect()?;
    let token = env.token(&remote)?;
    let info = remote.with_token(&token).info(&env.collection)?;
    if output.is_json() {
        print_json(info);
        return Ok(());
    }
    let text = |key: &str| -> String {
        match info.get(key) {
            Some(Value::String(s)) => names::for_terminal_bounded(s, 200),
            Some(v) => names::for_terminal_bounded(&v.to_string(), 200),
            None => "?".into(),
        }
    };
    let number = |key: &str| info.get(key).and_then(Value::as_u64).unwrap_or(0);
    println!("collection: {}", text("collection"));
    println!("kind:       {}", text("vectors"));
    println!("preset:     {}", text("preset"));
    let deleted = number("deleted");
    if deleted > 0 {
        println!(
            "images:     {} ({deleted} deleted, purged at the next `blindsight compact`)",
            number("images")
        );
    } else {
        println!("images:     {}", number("images"));
    }
    println!("segments:   {}", number("segments"));
    println!(
        "stored:     {} (ciphertexts, sealed files, thumbnails, names)",
        human_bytes(number("stored_bytes"))
    );
    println!(
        "keys:       {} (public evaluation keys)",
        human_bytes(number("key_bytes"))
    );
    if let Some(q) = info.get("quota") {
        let quota = |key: &str| q.get(key).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "quota:      {} images, {} stored, {} of keys",
            quota("images"),
            human_bytes(quota("stored_bytes")),
            human_bytes(quota("key_bytes"))
        );
    }
    println!("server:     {}", names::for_terminal(&env.endpoint()));
    Ok(())
}

/// A collection's line in a listing: its name (under `key`), kind, preset, images,
/// deleted images, segments and stored bytes, from the server's `info`.
pub(crate) fn summary(key: &str, name: &str, info: &Value) -> Value {
    let mut row = json!({
        "vectors": info.get("vectors"),
        "preset": info.get("preset"),
        "images": info.get("images"),
        "deleted": info.get("deleted"),
        "segments": info.get("segments"),
        "stored_bytes": info.get("stored_bytes"),
    });
    row[key] = json!(name);
    row
}

/// The collections this client holds tokens for on the server of `env` (filed under its
/// URL or, for the in-process or a loopback server, under its store id), by name.
pub(crate) fn known_collections(env: &Env, remote: &Remote) -> Result<BTreeSet<String>> {
    let tokens = env.read_tokens()?;
    let mut keys = vec![env.endpoint()];
    if env.trusts_store_id() {
        keys.push(Env::store_key(remote)?);
    }
    Ok(tokens
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?, f.next()?))
        })
        .filter(|(k, _)| keys.iter().any(|key| key == k))
        .map(|(_, c)| c.to_string())
        .collect())
}

/// `blindsight list`: the collections this client can open on its server, with their kind,
/// images, segments and bytes.
pub fn collections(env: &Env, output: Output) -> Result<()> {
    let (_server, remote) = env.connect()?;
    let known = known_collections(env, &remote)?;
    let mut rows = Vec::new();
    for name in &known {
        let scoped = Env {
            collection: name.clone(),
            ..env.clone()
        };
        let info = scoped
            .token(&remote)
            .and_then(|t| Ok(remote.with_token(&t).info(name)?));
        rows.push(match info {
            Ok(info) => summary("collection", name, &info),
            Err(e) => json!({ "collection": name, "error": e.to_string() }),
        });
    }
    if output.is_json() {
        print_json(json!({ "server": env.endpoint(), "collections": rows }));
        return Ok(());
    }
    if rows.is_empty() {
        println!(
            "no collections on {} for this keystore: `blindsight create --collection NAME` \
             makes one",
            names::for_terminal(&env.endpoint())
        );
        return Ok(());
    }
    let width = name_column("collection", known.iter().map(String::as_str));
    println!(
        "{}  {:>9}  {:>8}  {:>10}  kind",
        fit("collection", width),
        "images",
        "segments",
        "stored"
    );
    for row in &rows {
        let name = row["collection"].as_str().unwrap_or("");
        if let Some(e) = row.get("error").and_then(Value::as_str) {
            println!(
                "{}  cannot open: {}",
                fit(name, width),
                names::for_terminal_bounded(e, 200)
            );
            continue;
        }
        let n = |k: &str| row.get(k).and_then(Value::as_u64).unwrap_or(0);
        println!(
            "{}  {:>9}  {:>8}  {:>10}  {}",
            fit(name, width),
            n("images"),
            n("segments"),
            human_bytes(n("stored_bytes")),
            names::for_terminal_bounded(row["vectors"].as_str().unwrap_or("?"), 80)
        );
    }
    Ok(())
}

/// `blindsight list --images`: one page of the collection's images (id, name, whether
/// deleted, whether it has a thumbnail) after `after`, and how to ask for the next.
pub fn images(env: &Env, after: Option<i64>, limit: usize, output: Output) -> Result<()> {
    let (_server, client) = env.client()?;
    let (page, next) = client.image_page(after, limit.max(1))?;
    if output.is_json() {
        let images: Vec<Value> = page
            .iter()
            .map(|i| {
                json!({
                    "id": i.id,
                    "name": i.name,
                    "segment": i.segment,
                    "deleted": i.deleted,
                    "thumbnail": i.thumbnail,
                })
            })
            .collect();
        print_json(json!({ "collection": env.collection, "images": images, "next": next }));
        return Ok(());
    }
    let width = name_column("name", page.iter().map(|i| i.name.as_str()));
    println!("{:<20}  {}  state", "id", fit("name", width));
    for i in &page {
        let state = match (i.deleted, i.thumbnail) {
            (true, _) => "deleted",
            (false, true) => "",
            (false, false) => "no thumbnail yet",
        };
        println!("{:<20}  {}  {state}", i.id, fit(&i.name, width));
    }
    match next {
        Some(n) => println!(
            "more: blindsight list --images --after {n}{}",
            if limit == DEFAULT_PAGE {
                String::new()
            } else {
                format!(" --limit {limit}")
            }
        ),
        None if page.is_empty() => println!("no images"),
        None => {}
    }
    Ok(())
}
