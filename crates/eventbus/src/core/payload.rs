//! What a payload may hold beyond JSON's grammar, so that every reader downstream can read what
//! the bus stores, and both stores store the same thing:
//!
//! - **nesting** at most `max_depth` levels of arrays and objects (default
//!   [`DEFAULT_MAX_JSON_DEPTH`]): serde_json stops at 128 by default, Python's `json` near 1,000,
//!   and one deeper event would break every stream, webhook receiver and plugin that reads it;
//! - **no `\u0000`** in a string or key: PostgreSQL's `jsonb` refuses it, and C readers cut the
//!   string there;
//! - **no lone surrogate** (`\ud800` without its pair): it is not Unicode, PostgreSQL refuses it,
//!   and most decoders either refuse it or replace it;
//! - **numbers within a 64-bit float** (about ±1.8e308): `1e400` reads as infinity or an error in
//!   serde_json and JavaScript.
//!
//! [`check`] walks the JSON text once, without recursion and without allocating per value, so a
//! payload nested 100,000 levels deep costs the same as a flat one of its size; only the problem
//! it finds first is reported, with the path to it (`payload/items/3/name`, a JSON Pointer).

use super::event::FieldError;

/// Default of the deepest nesting of arrays and objects a payload may have.
pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;

/// The highest `max_depth` the bus accepts: below serde_json's own recursion limit (128), which
/// the schema validator and the plugin host parse with.
pub const MAX_JSON_DEPTH_LIMIT: usize = 100;

/// Checks the JSON text `json` (a payload, already known to be JSON) against the rules above.
/// The error's field is `field` followed by the JSON Pointer of the offending value.
pub fn check(field: &str, json: &str, max_depth: usize) -> Result<(), FieldError> {
    let b = json.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let mut key_next = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            open @ (b'[' | b'{') => {
                stack.push(Frame {
                    object: open == b'{',
                    index: 0,
                    key: None,
                });
                if stack.len() > max_depth {
                    return Err(FieldError::new(
                        pointer(field, json, &stack[..stack.len() - 1]),
                        format!(
                            "nests arrays and objects {} levels deep here; the limit is {max_depth} \
                             (MAX_JSON_DEPTH)",
                            stack.len()
                        ),
                    ));
                }
                key_next = open == b'{';
                i += 1;
            }
            b']' | b'}' => {
                stack.pop();
                key_next = false;
                i += 1;
            }
            b',' => {
                if let Some(top) = stack.last_mut() {
                    if top.object {
                        key_next = true;
                    } else {
                        top.index += 1;
                    }
                }
                i += 1;
            }
            b'"' => {
                let end = match string_end(b, i) {
                    Ok(end) => end,
                    Err(problem) => {
                        // A bad key is reported at its object; a bad string at itself.
                        let (at, what) = if key_next {
                            (&stack[..stack.len().saturating_sub(1)], "an object key")
                        } else {
                            (&stack[..], "a string")
                        };
                        return Err(FieldError::new(
                            pointer(field, json, at),
                            format!("{what} {problem}"),
                        ));
                    }
                };
                if key_next {
                    if let Some(top) = stack.last_mut() {
                        top.key = Some((i, end));
                    }
                    key_next = false;
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = &json[start..i];
                // Fewer than 309 digits and no exponent: always a finite f64.
                let may_overflow =
                    token.len() >= 309 || token.bytes().any(|c| c == b'e' || c == b'E');
                if may_overflow && !token.parse::<f64>().is_ok_and(f64::is_finite) {
                    let shown: String = token.chars().take(24).collect();
                    let more = if token.len() > shown.len() { "…" } else { "" };
                    return Err(FieldError::new(
                        pointer(field, json, &stack),
                        format!(
                            "the number {shown}{more} is out of the range of a 64-bit float \
                             (about ±1.8e308); send it as a string"
                        ),
                    ));
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// One open array or object: its index, or the raw text range of its current key.
struct Frame {
    object: bool,
    index: usize,
    key: Option<(usize, usize)>,
}

/// The end (one past the closing quote) of the string starting at `start`, or what is wrong in it.
fn string_end(b: &[u8], start: usize) -> Result<usize, &'static str> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Ok(i + 1),
            b'\\' if b.get(i + 1) == Some(&b'u') => {
                let unit = hex4(b, i + 2);
                match unit {
                    Some(0) => return Err("contains \\u0000, which the bus does not store"),
                    Some(0xD800..=0xDBFF) => {
                        let low = if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') {
                            hex4(b, i + 8)
                        } else {
                            None
                        };
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return Err("contains a lone surrogate (\\ud800-\\udbff without its \
                                        low half), which is not Unicode");
                        }
                        i += 12;
                    }
                    Some(0xDC00..=0xDFFF) => {
                        return Err("contains a lone surrogate (\\udc00-\\udfff without its \
                                    high half), which is not Unicode");
                    }
                    _ => i += 6,
                }
            }
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    Ok(b.len())
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

/// `field` and the JSON Pointer of the value inside the innermost frame of `stack`.
fn pointer(field: &str, json: &str, stack: &[Frame]) -> String {
    let mut out = field.to_owned();
    for frame in stack {
        out.push('/');
        if !frame.object {
            out.push_str(&frame.index.to_string());
            continue;
        }
        let key = frame
            .key
            .and_then(|(s, e)| serde_json::from_str::<String>(&json[s..e]).ok())
            .unwrap_or_default();
        out.push_str(&key.replace('~', "~0").replace('/', "~1"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str, depth: usize) -> (String, String) {
        let e = check("payload", json, depth).expect_err(json);
        (e.field.clone(), e.message.clone())
    }

    #[test]
    fn accepts_ordinary_payloads() {
        for ok in [
            "null",
            "1",
            "-0.5e-3",
            "1e308",
            r#""é \ud83d\ude00 \n""#,
            r#"{"a":[1,{"b":"c"}],"d":{}}"#,
            &format!("{}{}", "[".repeat(64), "]".repeat(64)),
            &"9".repeat(300),
        ] {
            assert_eq!(check("payload", ok, 64), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_deep_nesting_with_the_path_where_the_limit_was_passed() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let (field, message) = err(&deep, 64);
        assert_eq!(field, format!("payload{}", "/0".repeat(64)));
        assert!(
            message.contains("65 levels deep") && message.contains("limit is 64"),
            "{message}"
        );
        let (field, _) = err(r#"{"a":{"b/c":[0,[[1]]]}}"#, 4);
        assert_eq!(field, "payload/a/b~1c/1/0");
    }

    #[test]
    fn refuses_nul_and_lone_surrogates_in_strings_and_keys() {
        assert_eq!(err(r#"{"x":["ok","a\u0000"]}"#, 64).0, "payload/x/1");
        let (field, message) = err(r#"{"a":{"ok":1,"k\u0000":2}}"#, 64);
        assert_eq!(field, "payload/a");
        assert!(
            message.starts_with("an object key contains \\u0000"),
            "{message}"
        );
        assert!(err(r#""\ud800""#, 64).1.contains("lone surrogate"));
        assert!(err(r#""\ud800\u0041""#, 64).1.contains("lone surrogate"));
        assert!(err(r#""\udc00x""#, 64).1.contains("lone surrogate"));
        // An escaped backslash before `u` is not an escape.
        assert_eq!(check("payload", r#""\\u0000""#, 64), Ok(()));
    }

    #[test]
    fn refuses_numbers_out_of_float_range() {
        let (field, message) = err(r#"{"n":[1,-1e400]}"#, 64);
        assert_eq!(field, "payload/n/1");
        assert!(
            message.contains("-1e400") && message.contains("string"),
            "{message}"
        );
        assert!(err(&"9".repeat(400), 64).1.contains('…'));
        assert_eq!(
            check("payload", "1e-400", 64),
            Ok(()),
            "underflow reads as 0"
        );
    }
}
