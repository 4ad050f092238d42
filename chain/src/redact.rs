//! Credentials out of logs: RPC URLs carry API keys (`https://mainnet.infura.io/v3/<key>`,
//! `https://x.quiknode.pro/<token>/`, `?apikey=…`) and database URLs carry passwords
//! (`postgres://user:secret@host/db`). Everything a service logs, prints or puts in an error
//! message goes through [`redact_url`] (one URL) or [`redact_text`] (a message that may quote
//! URLs, such as a reqwest or sqlx error).
//!
//! What is kept: the scheme, the user name, the host and port, path segments that cannot be a key
//! (`v3`, `rpc`, a database name), query keys, and file paths of `sqlite:` and `file:` URLs. What
//! becomes `***`: passwords, a user name that looks like a key, path segments that look like keys,
//! every query value, fragments.

use std::fmt;

/// What replaces a secret.
pub const MASK: &str = "***";

/// `url` with every credential it may carry replaced by `***`: the password of its user info (and
/// a user name that looks like a key), each path segment that looks like an API key (see
/// [`looks_like_key`]), every query value and the fragment. Scheme, host and port are kept. A
/// string that is not a URL comes back with those rules applied as far as they fit (a bare path
/// loses key-like segments).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = split_scheme(url);
    let mut out = String::with_capacity(url.len());
    let file_like = scheme.is_some_and(|s| {
        let s = s.to_ascii_lowercase();
        s == "sqlite" || s == "file"
    });
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push(':');
    }
    let mut rest = rest;
    if let Some(after) = rest.strip_prefix("//") {
        out.push_str("//");
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, tail) = after.split_at(end);
        out.push_str(&redact_authority(authority));
        rest = tail;
    }
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, tail) = rest.split_at(path_end);
    if file_like {
        out.push_str(path);
    } else {
        let segments: Vec<&str> = path.split('/').collect();
        for (i, segment) in segments.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            if looks_like_key(segment) {
                out.push_str(MASK);
            } else {
                out.push_str(segment);
            }
        }
    }
    let (query, fragment) = match tail.find('#') {
        Some(i) => (&tail[..i], Some(&tail[i + 1..])),
        None => (tail, None),
    };
    if let Some(query) = query.strip_prefix('?') {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _)) => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(MASK);
                }
                None if looks_like_key(pair) => out.push_str(MASK),
                None => out.push_str(pair),
            }
        }
    }
    if fragment.is_some_and(|f| !f.is_empty()) {
        out.push('#');
        out.push_str(MASK);
    }
    out
}

/// `text` (an error message, a log line) with every URL in it passed through [`redact_url`]. A URL
/// starts at a scheme followed by `://` (`http`, `https`, `ws`, `wss`, `postgres`, `postgresql`,
/// `mysql`, `sqlite` or any other) and ends at whitespace, a quote, a closing bracket or the end.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` right before `://`.
        let before = &rest[..at];
        let scheme_start = before
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(at, |(i, _)| i);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '"' | '\'' | '`' | ')' | ']' | '}' | '>' | '<' | ',' | ';'
                    )
            })
            .unwrap_or(after.len());
        let url_end = at + 3 + end;
        out.push_str(&rest[..scheme_start]);
        if scheme_start == at {
            // No scheme: not a URL, but `://user:pass@host` still hides its password.
            out.push_str("://");
            out.push_str(&redact_authority_prefix(&rest[at + 3..url_end]));
        } else {
            out.push_str(&redact_url(&rest[scheme_start..url_end]));
        }
        rest = &rest[url_end..];
    }
    out.push_str(rest);
    out
}

/// A URL that displays redacted: `tracing::info!(rpc = %Redacted(&url))`, `format!("{}",
/// Redacted(url))`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted<'a>(pub &'a str);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(self.0))
    }
}

/// Whether a path segment or bare query word may be a secret: at least 20 characters of letters,
/// digits, `-` and `_`, with a letter, and anything but lower-case words joined by `-` or `_`: a
/// digit, both cases, or one unbroken run (hex or base-62 API keys and tokens, e.g. Infura's 32 hex
/// digits or Alchemy's 32 base-62 characters, which may hold no digit at all). Words such as `v3`,
/// `rpc`, `mainnet` or a database name like `infera_indexer_production` stay.
pub fn looks_like_key(segment: &str) -> bool {
    let has = |f: fn(&char) -> bool| segment.chars().any(|c| f(&c));
    segment.len() >= 20
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && has(char::is_ascii_alphabetic)
        && (has(char::is_ascii_digit)
            || (has(char::is_ascii_uppercase) && has(char::is_ascii_lowercase))
            || !segment.contains(['-', '_']))
}

/// The scheme (without `:`) and the rest, when `url` starts with one (`[A-Za-z][A-Za-z0-9+.-]*:`).
fn split_scheme(url: &str) -> (Option<&str>, &str) {
    let Some(colon) = url.find(':') else {
        return (None, url);
    };
    let scheme = &url[..colon];
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // `host:port` without a scheme: the "scheme" would be followed by digits only.
    let port_like = url[colon + 1..]
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if valid && !port_like {
        (Some(scheme), &url[colon + 1..])
    } else {
        (None, url)
    }
}

/// `user:password@host:port` → `user:***@host:port`; a key-like user name becomes `***` too.
fn redact_authority(authority: &str) -> String {
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{}:{MASK}", mask_key(user)),
                None => mask_key(userinfo).to_owned(),
            };
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    }
}

/// The authority part at the start of `text` redacted, the rest kept.
fn redact_authority_prefix(text: &str) -> String {
    let end = text.find(['/', '?', '#']).unwrap_or(text.len());
    format!("{}{}", redact_authority(&text[..end]), &text[end..])
}

fn mask_key(word: &str) -> &str {
    if looks_like_key(word) { MASK } else { word }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_keys_are_masked_hosts_kept() {
        let cases = [
            (
                "postgres://indexer:s3cr3t@db.internal:5432/infera",
                "postgres://indexer:***@db.internal:5432/infera",
            ),
            (
                "postgresql://root@127.0.0.1:5432/test",
                "postgresql://root@127.0.0.1:5432/test",
            ),
            (
                "https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161",
                "https://mainnet.infura.io/v3/***",
            ),
            (
                "https://eth-mainnet.g.alchemy.com/v2/Xy3k_9LmN0pQrStUvWxYz12345-abc",
                "https://eth-mainnet.g.alchemy.com/v2/***",
            ),
            (
                "wss://few-ancient-dawn.quiknode.pro/4f9c1e2d3b4a59687a6b5c4d3e2f1a0b/",
                "wss://few-ancient-dawn.quiknode.pro/***/",
            ),
            (
                "https://rpc.example.org/?apikey=abc&network=mainnet",
                "https://rpc.example.org/?apikey=***&network=***",
            ),
            (
                "https://user:pw@rpc.example.org:8443/path#token",
                "https://user:***@rpc.example.org:8443/path#***",
            ),
            (
                "https://0123456789abcdef0123456789abcdef@rpc.example.org/",
                "https://***@rpc.example.org/",
            ),
            ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
            (
                "sqlite:///tmp/infera-indexer-reorg-12345-67890/following.db?mode=rwc",
                "sqlite:///tmp/infera-indexer-reorg-12345-67890/following.db?mode=***",
            ),
            ("sqlite://infera-indexer.db", "sqlite://infera-indexer.db"),
            ("mysql://x", "mysql://x"),
            ("", ""),
        ];
        for (url, redacted) in cases {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert_eq!(Redacted(url).to_string(), redacted, "{url}");
        }
    }

    #[test]
    fn urls_inside_messages_are_masked() {
        let message = "error sending request for url (https://mainnet.infura.io/v3/9aa3d95b3bc440fa88ea12eaa4456161): \
                       connection refused; db postgres://u:hunter2@h/db, \"wss://k:v@x.io/?key=1\"";
        let redacted = redact_text(message);
        assert_eq!(
            redacted,
            "error sending request for url (https://mainnet.infura.io/v3/***): \
             connection refused; db postgres://u:***@h/db, \"wss://k:***@x.io/?key=***\""
        );
        assert!(!redacted.contains("9aa3d95b") && !redacted.contains("hunter2"));
        assert_eq!(redact_text("no url here"), "no url here");
        assert_eq!(redact_text("odd ://a:b@c tail"), "odd ://a:***@c tail");
    }

    #[test]
    fn key_heuristic_keeps_ordinary_words() {
        for word in [
            "v3",
            "rpc",
            "mainnet",
            "infera",
            "eth-mainnet",
            "test_db_1",
            "infera_indexer_production",
        ] {
            assert!(!looks_like_key(word), "{word}");
        }
        for word in [
            "9aa3d95b3bc440fa88ea12eaa4456161",
            "Xy3k_9LmN0pQrStUvWxYz12345-abc",
            // Base-62 keys with fewer than two digits (about 2.6 % of random Alchemy keys).
            "AbCdEfGhIjKlMnOpQrStUvWxYz1AbCdE",
            "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEf",
            "abcdefghijklmnopqrstuvwxyzabcdef",
        ] {
            assert!(looks_like_key(word), "{word}");
        }
    }
}
