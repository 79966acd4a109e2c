//! ARM list paging: every list answers `{ "value": [...], "nextLink": "..." }` with at most
//! one page of items, and `nextLink` (absent on the last page) is an absolute URL the client
//! calls as given (ARM RPC, `common-api-details.md`: "Get Resource" collections).
//!
//! Pages follow the lowercased resource id (keyset, not offsets): a page stays correct while
//! others create or delete resources between two calls. The `$skipToken` is the key of the
//! last item of the previous page, hex-encoded so it is opaque and needs no escaping in a
//! URL. `$top` asks for smaller (or, up to [`MAX_TOP`], larger) pages and is carried into
//! `nextLink`.

use actix_web::HttpRequest;
use serde::Deserialize;

use crate::error::ArmError;

/// The most items a page may hold, whatever `$top` asks.
pub const MAX_TOP: usize = 1000;

/// The paging members of a list's query string.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "$top")]
    top: Option<String>,
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
}

/// Which page a list request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Items on this page.
    pub size: usize,
    /// `$top` as the client gave it, to carry into `nextLink`.
    top: Option<usize>,
    /// The page starts after this resource key.
    pub after: Option<String>,
}

impl PageRequest {
    /// Reads `$top` and `$skipToken`; `default_size` applies without `$top`.
    pub fn parse(q: &ListQuery, default_size: usize) -> Result<Self, ArmError> {
        let top = match q.top.as_deref() {
            None => None,
            Some(raw) => match raw.parse::<usize>() {
                Ok(n) if (1..=MAX_TOP).contains(&n) => Some(n),
                _ => {
                    return Err(ArmError::InvalidQuery(format!(
                        "'$top' must be an integer from 1 to {MAX_TOP}, not '{raw}'."
                    )))
                }
            },
        };
        let after = q
            .skip_token
            .as_deref()
            .map(|t| {
                decode_token(t).ok_or_else(|| {
                    ArmError::InvalidQuery(format!("'$skipToken' '{t}' is not a valid token."))
                })
            })
            .transpose()?;
        Ok(Self {
            size: top.unwrap_or(default_size).clamp(1, MAX_TOP),
            top,
            after,
        })
    }
}

/// One page of a list: the items, and the key to continue after when more follow.
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_after: Option<String>,
}

impl<T> Page<T> {
    /// Cuts `fetched` (up to `size + 1` items, in key order) to a page: the extra item only
    /// says that another page exists.
    pub fn cut(mut fetched: Vec<T>, size: usize, key: impl Fn(&T) -> String) -> Self {
        let more = fetched.len() > size;
        fetched.truncate(size);
        let next_after = if more { fetched.last().map(key) } else { None };
        Self {
            items: fetched,
            next_after,
        }
    }
}

/// The absolute URL of the page after `after`: the list's own URL, on the host the client
/// called, with `api-version`, `$skipToken` and the client's `$top`.
pub fn next_link(req: &HttpRequest, page: &PageRequest, after: &str) -> String {
    let info = req.connection_info();
    let mut url = format!(
        "{}://{}{}?api-version={}&$skipToken={}",
        info.scheme(),
        info.host(),
        req.path(),
        crate::API_VERSION,
        encode_token(after)
    );
    if let Some(top) = page.top {
        url.push_str(&format!("&$top={top}"));
    }
    url
}

fn encode_token(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Option<String> {
    if token.is_empty() || !token.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(top: Option<&str>, token: Option<&str>) -> ListQuery {
        ListQuery {
            top: top.map(str::to_owned),
            skip_token: token.map(str::to_owned),
        }
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused() {
        let key = "/subscriptions/s/resourcegroups/rg_(1)/providers/x/workspaces/ws1";
        assert_eq!(decode_token(&encode_token(key)).as_deref(), Some(key));
        for bad in ["", "a", "zz", "c3"] {
            // "c3" alone is not UTF-8.
            assert!(decode_token(bad).is_none(), "{bad}");
        }
        let page = PageRequest::parse(&query(None, Some(&encode_token(key))), 100).unwrap();
        assert_eq!(page.after.as_deref(), Some(key));
        assert_eq!(page.size, 100);
        assert!(PageRequest::parse(&query(None, Some("xyz")), 100).is_err());
    }

    #[test]
    fn top_sets_the_page_size_within_limits() {
        assert_eq!(
            PageRequest::parse(&query(Some("7"), None), 100)
                .unwrap()
                .size,
            7
        );
        for bad in ["0", "-1", "x", "1001"] {
            assert!(
                matches!(
                    PageRequest::parse(&query(Some(bad), None), 100),
                    Err(ArmError::InvalidQuery(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_page_knows_whether_another_follows() {
        let p = Page::cut(vec![1, 2, 3], 2, |n| n.to_string());
        assert_eq!(p.items, vec![1, 2]);
        assert_eq!(p.next_after.as_deref(), Some("2"));
        let last = Page::cut(vec![1, 2], 2, |n| n.to_string());
        assert!(last.next_after.is_none());
    }
}
