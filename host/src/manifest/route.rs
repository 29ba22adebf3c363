//! Routes as Spin writes and matches them: exact paths, a trailing `/...`
//! wildcard, and `:name` segments that match any one segment, anywhere
//! (also before a trailing wildcard). When several routes serve a path the
//! most specific wins, compared segment by segment from the left: a literal
//! segment beats a `:name`, which beats the wildcard; if one route is a
//! prefix of the other in those terms, the shorter wins. So an exact route
//! beats any wildcard, and among wildcards the longest prefix wins.

use std::cmp::Ordering;

use super::Problem;

/// A route pattern of a manifest.
#[derive(Debug, Clone)]
pub struct Route {
    /// As written in the manifest.
    raw: String,
    segments: Vec<Segment>,
    /// Ends in `/...`: matches the segments below it too.
    wildcard: bool,
    /// The segments written out again, without the wildcard (made once:
    /// every request to the route is told it).
    component_route: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `:name`: any one segment.
    Param(String),
}

/// What a route made of a path it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'r> {
    /// Each `:name` and the segment it matched, in route order.
    pub params: Vec<(&'r str, String)>,
    /// The part of the path the trailing wildcard matched (`""` for an
    /// exact route, or for the wildcard's own prefix).
    pub path_info: String,
}

/// Two routes are the same if they match the same paths under the same
/// parameter names, however they are written (`/a/` is `/a`).
impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.segments == other.segments && self.wildcard == other.wildcard
    }
}

impl Eq for Route {}

/// A path's segments: `/a/b/` is `a`, `b`; `/` has none.
fn split(path: &str) -> impl Iterator<Item = &str> {
    let path = path.trim_matches('/');
    path.split('/').filter(move |_| !path.is_empty())
}

impl Route {
    /// Reads a route as a manifest writes it.
    pub fn parse(text: &str) -> Result<Self, Problem> {
        if !text.starts_with('/') {
            return Err(Problem::RouteStart(text.into()));
        }
        let (path, wildcard) = match text.strip_suffix("...") {
            Some(prefix) if prefix.ends_with('/') => (prefix, true),
            _ => (text, false),
        };
        if path.contains("...") {
            return Err(Problem::RouteWildcard(text.into()));
        }
        let segments = split(path)
            .map(|segment| match segment.strip_prefix(':') {
                Some("") => Err(Problem::RouteParam(text.into())),
                Some(name) => Ok(Segment::Param(name.into())),
                None => Ok(Segment::Literal(segment.into())),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let component_route = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Param(n) => format!("/:{n}"),
            })
            .collect();
        Ok(Route {
            raw: text.into(),
            segments,
            wildcard,
            component_route,
        })
    }

    /// The route as the manifest writes it.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// The route without its trailing wildcard: `/users/:id` for
    /// `/users/:id/...`, and `""` for `/...` (Spin's
    /// `spin-component-route`).
    pub fn component_route(&self) -> &str {
        &self.component_route
    }

    /// The literal path below which every path it serves lies: `/users`
    /// for `/users/:id/...`.
    pub fn literal_prefix(&self) -> String {
        self.segments
            .iter()
            .map_while(|s| match s {
                Segment::Literal(l) => Some(format!("/{l}")),
                Segment::Param(_) => None,
            })
            .collect()
    }

    /// Whether this route serves `path` (no query), and with what.
    pub fn matches(&self, path: &str) -> Option<Matched<'_>> {
        let mut given = split(path);
        let mut params = Vec::new();
        for segment in &self.segments {
            let part = given.next()?;
            match segment {
                Segment::Literal(l) if l == part => {}
                Segment::Literal(_) => return None,
                Segment::Param(name) => params.push((name.as_str(), part.to_string())),
            }
        }
        if !self.wildcard {
            return given.next().is_none().then_some(Matched {
                params,
                path_info: String::new(),
            });
        }
        // What is left of the path as sent, past the route's segments.
        let mut rest = path;
        for _ in &self.segments {
            rest = rest.trim_start_matches('/');
            rest = rest.find('/').map_or("", |at| &rest[at..]);
        }
        Some(Matched {
            params,
            path_info: rest.to_string(),
        })
    }

    /// Which of two routes serving a path serves it: `Less` if this one.
    pub fn precedence(&self, other: &Route) -> Ordering {
        let (mine, theirs) = (self.ranks(), other.ranks());
        mine.iter()
            .zip(&theirs)
            .map(|(a, b)| a.cmp(b))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| mine.len().cmp(&theirs.len()))
    }

    /// Each segment's rank, most specific first: a literal, a `:name`,
    /// the trailing wildcard.
    fn ranks(&self) -> Vec<u8> {
        let mut ranks: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
            })
            .collect();
        if self.wildcard {
            ranks.push(2);
        }
        ranks
    }

    /// Whether some path is served by both routes.
    pub fn overlaps(&self, other: &Route) -> bool {
        let mut mine = self.segments.iter();
        let mut theirs = other.segments.iter();
        loop {
            match (mine.next(), theirs.next()) {
                (Some(Segment::Literal(a)), Some(Segment::Literal(b))) if a != b => return false,
                (Some(_), Some(_)) => {}
                (Some(_), None) => return other.wildcard,
                (None, Some(_)) => return self.wildcard,
                (None, None) => return true,
            }
        }
    }
}

/// The route in its normal form: `/users/:id/...`, `/hello`, `/`.
impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let base = self.component_route();
        match (base.is_empty(), self.wildcard) {
            (_, true) => write!(f, "{base}/..."),
            (true, false) => f.write_str("/"),
            (false, false) => f.write_str(base),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(text: &str) -> Route {
        Route::parse(text).unwrap()
    }

    #[test]
    fn routes_match_and_overlap() {
        let wild = route("/store/...");
        assert!(wild.matches("/store").is_some());
        assert!(wild.matches("/store/a/b").is_some());
        assert!(wild.matches("/storage").is_none());
        let root = route("/...");
        assert!(root.matches("/anything").is_some() && root.matches("/").is_some());
        let exact = route("/hello");
        assert!(exact.matches("/hello").is_some() && exact.matches("/hello/x").is_none());
        assert!(exact.matches("/hello/").is_some());
        assert!(root.overlaps(&exact) && exact.overlaps(&root));
        assert!(wild.overlaps(&route("/store/x")));
        assert!(!wild.overlaps(&exact));
        assert!(!route("/a/...").overlaps(&route("/ab/...")));
        assert!(route("/users/:id").overlaps(&route("/users/me")));
        assert!(!route("/users/:id").overlaps(&route("/users/me/x")));
        assert!(route("/:a/b").overlaps(&route("/a/:b/...")));
    }

    #[test]
    fn parameters_and_path_info_are_what_spin_gives() {
        let r = route("/base/:a/:b/...");
        let m = r.matches("/base/x/y/rest").unwrap();
        assert_eq!(m.params, [("a", "x".to_string()), ("b", "y".to_string())]);
        assert_eq!(m.path_info, "/rest");
        assert_eq!(r.component_route(), "/base/:a/:b");
        assert_eq!(r.to_string(), "/base/:a/:b/...");
        let files = route("/static/...");
        for (path, info) in [
            ("/static", ""),
            ("/static/", "/"),
            ("/static/a/", "/a/"),
            ("/static/css/site.css", "/css/site.css"),
        ] {
            assert_eq!(files.matches(path).unwrap().path_info, info, "{path}");
        }
        assert_eq!(route("/...").matches("/x/y").unwrap().path_info, "/x/y");
        assert_eq!(route("/hello").matches("/hello").unwrap().path_info, "");
        assert!(route("/users/:id").matches("/users").is_none());
        assert!(Route::parse("/users/:").is_err());
        assert_eq!(route("/a/"), route("/a"));
        assert_eq!(route("/").to_string(), "/");
    }

    /// Spin's precedence: routes, then each path and the route that serves it.
    #[test]
    fn the_most_specific_route_serves_a_path() {
        let routes = [
            "/",
            "/...",
            "/one",
            "/one/...",
            "/one/two/...",
            "/one/two/three/...",
            "/users/:id",
            "/users/...",
            "/users/:id/...",
            "/users/admin/...",
            "/a/:p/c",
            "/a/b/...",
            "/v/:x",
            "/v/:x/...",
        ]
        .map(route);
        let serving = |path: &str| {
            routes
                .iter()
                .filter(|r| r.matches(path).is_some())
                .min_by(|a, b| a.precedence(b))
                .map(|r| r.raw().to_string())
        };
        for (path, expected) in [
            ("/", "/"),
            ("/two", "/..."),
            ("/one", "/one"),
            ("/one/x", "/one/..."),
            ("/one/two", "/one/two/..."),
            ("/one/two/three/four", "/one/two/three/..."),
            ("/users/42", "/users/:id"),
            ("/users", "/users/..."),
            ("/users/42/orders", "/users/:id/..."),
            ("/users/admin/x", "/users/admin/..."),
            // Decided at the first segment where the routes differ: there
            // `admin` (a literal) beats `:id`, as in Spin.
            ("/users/admin", "/users/admin/..."),
            ("/a/b/c", "/a/b/..."),
            ("/a/z/c", "/a/:p/c"),
            ("/a/z/d", "/..."),
            ("/v/1", "/v/:x"),
            ("/v/1/2", "/v/:x/..."),
            ("/v", "/..."),
            ("/one/", "/one"),
            ("/users/42/", "/users/:id"),
            ("/elsewhere/deep/path", "/..."),
        ] {
            assert_eq!(serving(path).as_deref(), Some(expected), "{path}");
        }
    }
}
