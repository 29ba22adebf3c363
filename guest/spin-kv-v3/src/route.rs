//! The HTTP contract both spin-kv apps answer, free of any SDK type so that
//! the v2 and v3 apps cannot drift apart (`spin-kv-v2` compiles this same
//! file) and so that it is unit-tested on the native target.

/// What a request asks of the key-value API. Keys are percent-decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Op {
    Get(String),
    Put(String),
    Delete(String),
    Exists(String),
    Keys,
    GetJson(String),
    PutJson(String),
    SelfTest,
    /// Reads `/<path>` from the files the manifest mounts (no store).
    File(String),
    /// Reads an application variable (no store).
    Variable(String),
}

/// A routed request: the operation and the label of the store it names.
#[derive(Debug, PartialEq, Eq)]
pub struct Routed {
    pub op: Op,
    pub label: String,
}

/// The first path segment of every operation.
const OPS: [&str; 7] = ["kv", "exists", "keys", "json", "selftest", "file", "var"];

/// Routes a request, or gives the status to answer instead (400, 404, 405).
///
/// `path_info` is the `spin-path-info` header: the path below the trigger
/// route, which must then start with an operation. Without it the full path
/// is searched for the first operation segment, so the app also answers
/// under a wildcard route on a host that does not send the header.
pub fn route(
    method: &str,
    path_info: Option<&str>,
    path: &str,
    query: &str,
) -> Result<Routed, u16> {
    let (name, rest) = match path_info {
        Some(info) => split_op(info).filter(|(name, _)| OPS.contains(name)),
        None => find_op(path),
    }
    .ok_or(404u16)?;
    // Keys may hold `/` and percent-escapes; a key that is not UTF-8 is a
    // client error, an empty one names nothing.
    let key = || -> Result<String, u16> {
        match percent_encoding::percent_decode_str(rest).decode_utf8() {
            Ok(key) if key.is_empty() => Err(404),
            Ok(key) => Ok(key.into_owned()),
            Err(_) => Err(400),
        }
    };
    let op = match (name, method) {
        ("keys" | "selftest", _) if !rest.is_empty() => return Err(404),
        ("kv", "GET") => Op::Get(key()?),
        ("kv", "PUT") => Op::Put(key()?),
        ("kv", "DELETE") => Op::Delete(key()?),
        ("exists", "GET") => Op::Exists(key()?),
        ("keys", "GET") => Op::Keys,
        ("json", "GET") => Op::GetJson(key()?),
        ("json", "PUT") => Op::PutJson(key()?),
        ("selftest", "GET") => Op::SelfTest,
        ("file", "GET") => Op::File(format!("/{}", key()?)),
        ("var", "GET") => Op::Variable(key()?),
        _ => return Err(405),
    };
    let label = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "store")
        .map_or_else(|| "default".to_owned(), |(_, label)| label.into_owned());
    Ok(Routed { op, label })
}

/// Splits `/name/rest` into `name` and `rest`.
fn split_op(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    Some(path.split_once('/').unwrap_or((path, "")))
}

/// Skips the segments of the route's base up to the first operation.
fn find_op(mut path: &str) -> Option<(&str, &str)> {
    loop {
        let (name, rest) = split_op(path)?;
        if OPS.contains(&name) {
            return Some((name, rest));
        }
        path = &path[1 + name.len()..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: &str, info: Option<&str>, path: &str, query: &str) -> Result<Routed, u16> {
        route(method, info, path, query)
    }

    #[test]
    fn path_info_routes_below_the_base() {
        let routed = op("GET", Some("/kv/a/b%20c"), "/v3/kv/a/b%20c", "").unwrap();
        assert_eq!(routed.op, Op::Get("a/b c".into()));
        assert_eq!(routed.label, "default");
        // With the header the base is not skipped: a wrong header shows.
        assert_eq!(op("GET", Some("/v3/kv/a"), "/v3/kv/a", ""), Err(404));
    }

    #[test]
    fn full_path_skips_the_base() {
        let routed = op("PUT", None, "/v3/json/x", "store=other&y=1").unwrap();
        assert_eq!(routed.op, Op::PutJson("x".into()));
        assert_eq!(routed.label, "other");
        assert_eq!(op("GET", None, "/keys", "").unwrap().op, Op::Keys);
        assert_eq!(
            op("GET", None, "/a/b/selftest", "").unwrap().op,
            Op::SelfTest
        );
        assert_eq!(op("GET", None, "/v3/nothing", ""), Err(404));
        assert_eq!(op("GET", None, "", ""), Err(404));
    }

    #[test]
    fn every_operation_and_its_errors() {
        let get = |method, path| op(method, Some(path), "", "store=a%2Fb").map(|r| r.op);
        assert_eq!(get("DELETE", "/kv/k"), Ok(Op::Delete("k".into())));
        assert_eq!(get("GET", "/exists/k"), Ok(Op::Exists("k".into())));
        assert_eq!(get("GET", "/json/k"), Ok(Op::GetJson("k".into())));
        assert_eq!(get("POST", "/kv/k"), Err(405));
        assert_eq!(get("PUT", "/keys"), Err(405));
        assert_eq!(get("GET", "/keys/x"), Err(404));
        assert_eq!(get("GET", "/kv/"), Err(404));
        assert_eq!(get("GET", "/kv"), Err(404));
        assert_eq!(get("GET", "/kv/%FF"), Err(400));
        assert_eq!(
            get("GET", "/file/static/a.txt"),
            Ok(Op::File("/static/a.txt".into()))
        );
        assert_eq!(
            op("GET", Some("/keys"), "", "store=a%2Fb").unwrap().label,
            "a/b"
        );
    }
}
