//! The words of error answers about requests that do not parse: what serde
//! and actix say about a JSON body, a query string or a path, said in the
//! API's terms (fields, JSON shapes, the parameters and example body of the
//! route, from the OpenAPI document) and never in Rust's (type names,
//! `untagged enum`, `struct`, `invalid type:`).

use std::sync::OnceLock;

use actix_web::HttpRequest;
use serde_json::Value;

use super::openapi::document;

/// Words that mean something only to a reader of the Rust source; no error
/// answer may contain them (`tests/store/bad_input.rs` checks).
pub const RUST_WORDS: [&str; 7] = [
    "untagged",
    "variant",
    "struct ",
    "invalid type: ",
    "Content type error",
    "::",
    "Option<",
];

/// Whether `text` says anything in Rust's words.
pub fn speaks_rust(text: &str) -> bool {
    RUST_WORDS.iter().any(|w| text.contains(w))
}

/// A JSON body that did not parse into what the route takes.
pub fn json_body(e: &serde_json::Error, req: &HttpRequest) -> String {
    use serde_json::error::Category;
    let at = position(e);
    let text = strip_position(&e.to_string());
    let what = match e.classify() {
        Category::Syntax | Category::Eof => format!("the body is not valid JSON: {text}{at}"),
        Category::Data => format!("the JSON body {}{at}", data_problem(&text, "field")),
        Category::Io => "the body could not be read whole".to_owned(),
    };
    match body_hint(req) {
        Some(h) => format!("{what}; this route takes {h}"),
        None => what,
    }
}

/// A JSON body that is not JSON at all (the original API, which reads any
/// object): the syntax error, where it is.
pub fn json_syntax(e: &serde_json::Error) -> String {
    let text = strip_position(&e.to_string());
    let text = if speaks_rust(&text) {
        "it does not parse".to_owned()
    } else {
        text
    };
    format!("the body is not valid JSON: {text}{}", position(e))
}

/// A query string that did not parse into the route's parameters: the
/// parameter at fault when the OpenAPI document can tell, else serde's
/// reason in the API's words; with the parameters the route takes.
pub fn query(said: &str, req: &HttpRequest) -> String {
    let params = route_params(req, "query");
    let given: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    let culprit = given.iter().find_map(|(k, v)| {
        let (_, schema) = params.iter().find(|(n, _)| n == k)?;
        let want = value_problem(v, schema)?;
        Some(format!("{k}={v:?} is not {want}"))
    });
    let what = culprit.unwrap_or_else(|| {
        format!(
            "the query string {}",
            data_problem(&strip_position(said), "parameter")
        )
    });
    match describe_params(&params) {
        Some(list) => format!("{what}; this route takes the query parameters {list}"),
        None => what,
    }
}

/// A path whose parameters did not parse.
pub fn path(said: &str) -> String {
    format!("the path {}", data_problem(&strip_position(said), "part"))
}

fn position(e: &serde_json::Error) -> String {
    if e.line() > 0 {
        format!(" (line {}, column {})", e.line(), e.column())
    } else {
        String::new()
    }
}

/// serde_json's " at line L column C" taken off (said separately).
fn strip_position(text: &str) -> String {
    match text.rfind(" at line ") {
        Some(i) if text[i..].contains(" column ") => text[..i].to_owned(),
        _ => text.to_owned(),
    }
}

/// The names between backticks in serde's lists (`a`, `b`).
fn ticked(list: &str) -> Vec<&str> {
    list.split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| !s.is_empty())
        .collect()
}

/// What serde's data error `text` says, as the rest of a sentence about
/// the body (or query string): "lacks the field \"tag\"", ...
fn data_problem(text: &str, field: &str) -> String {
    if let Some(rest) = text.strip_prefix("missing field ") {
        return format!("lacks the {field} {}", quote_ticked(rest));
    }
    if let Some(rest) = text.strip_prefix("duplicate field ") {
        return format!("has the {field} {} twice", quote_ticked(rest));
    }
    if let Some(rest) = text.strip_prefix("unknown field ") {
        let (name, known) = rest.split_once(", ").unwrap_or((rest, ""));
        let known = ticked(known);
        let list = if known.is_empty() {
            String::new()
        } else {
            format!(" (it takes {})", known.join(", "))
        };
        return format!("has an unknown {field} {}{list}", quote_ticked(name));
    }
    if let Some(rest) = text.strip_prefix("unknown variant ") {
        let (name, known) = rest.split_once(", ").unwrap_or((rest, ""));
        let known = ticked(known);
        let want = if known.is_empty() {
            "a known word".to_owned()
        } else {
            format!("one of {}", known.join(", "))
        };
        return format!("has {} where {want} is expected", quote_ticked(name));
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = text.strip_prefix(prefix) {
            if let Some((got, want)) = rest.split_once(", expected ") {
                return format!("has {} where {} is expected", found(got), expected(want));
            }
        }
    }
    if let Some(rest) = text.strip_prefix("invalid length ") {
        if let Some((n, want)) = rest.split_once(", expected ") {
            return format!("has a list of {n} where {} is expected", expected(want));
        }
    }
    if text.contains("did not match any variant") {
        return "does not have the shape this route takes".to_owned();
    }
    // a parser's own words (numbers, booleans, dates) or our own messages
    match text {
        "invalid digit found in string" | "cannot parse integer from empty string" => {
            "has a value that is not a whole number".to_owned()
        }
        "number too large to fit in target type" | "number too small to fit in target type" => {
            "has a number out of range".to_owned()
        }
        "provided string was not `true` or `false`" => {
            "has a value that is not true or false".to_owned()
        }
        "invalid float literal" => "has a value that is not a number".to_owned(),
        other if speaks_rust(other) => "does not have the shape this route takes".to_owned(),
        other => format!("is not what this route takes: {}", other.replace('`', "\"")),
    }
}

/// `` `name` `` as `"name"`.
fn quote_ticked(s: &str) -> String {
    format!("\"{}\"", s.trim().trim_matches('`'))
}

/// serde's "unexpected" half, in JSON's words.
fn found(got: &str) -> String {
    let inner = |p: &str| got.strip_prefix(p).map(|v| v.trim_matches('`').to_owned());
    if let Some(v) = inner("boolean ") {
        return v;
    }
    if let Some(v) = inner("integer ").or_else(|| inner("floating point ")) {
        return format!("the number {v}");
    }
    if let Some(v) = got.strip_prefix("string ") {
        return format!("the string {v}");
    }
    if let Some(v) = inner("character ") {
        return format!("the string \"{v}\"");
    }
    match got {
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "unit value" | "unit" | "null" => "null".into(),
        "Option value" => "a value".into(),
        other if speaks_rust(other) => "a value of another kind".into(),
        other => other.replace('`', "\""),
    }
}

/// serde's "expected" half, in JSON's words.
fn expected(want: &str) -> String {
    let w = want.trim();
    let bare = w
        .strip_prefix("a ")
        .or_else(|| w.strip_prefix("an "))
        .unwrap_or(w);
    match bare {
        "boolean" | "bool" => return "true or false".into(),
        "string" | "borrowed string" | "str" | "char" | "character" => return "a string".into(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => {
            return "a whole number (0 or more)".into()
        }
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => return "a whole number".into(),
        "f32" | "f64" => return "a number".into(),
        "sequence" | "tuple" | "array" => return "a list".into(),
        "map" => return "an object".into(),
        "option" => return "a value or null".into(),
        _ => {}
    }
    if bare.starts_with("struct ") || bare.starts_with("tuple struct ") {
        return "an object".into();
    }
    if bare.starts_with("sequence") || bare.starts_with("tuple of") {
        return "a list".into();
    }
    if bare.starts_with("enum ") || bare.contains("identifier") {
        return "one of the words this field takes".into();
    }
    if speaks_rust(w) {
        return "a value of another kind".into();
    }
    w.replace('`', "\"")
}

/// The OpenAPI document, parsed once.
fn doc() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::from_str(document()).unwrap_or(Value::Null))
}

/// The document's operation for this request's route and method.
fn operation(req: &HttpRequest) -> Option<&'static Value> {
    let pattern = req.match_pattern()?;
    let method = req.method().as_str().to_ascii_lowercase();
    let op = doc().get("paths")?.get(pattern.as_str())?.get(method)?;
    Some(op)
}

/// What the route's JSON body looks like: its example, else its fields.
fn body_hint(req: &HttpRequest) -> Option<String> {
    let content = operation(req)?
        .get("requestBody")?
        .get("content")?
        .get("application/json")?;
    if let Some(ex) = content.get("example") {
        return Some(format!("a JSON body like {ex}"));
    }
    let schema = resolve(content.get("schema")?);
    let fields: Vec<&str> = schema
        .get("properties")?
        .as_object()?
        .keys()
        .map(String::as_str)
        .collect();
    (!fields.is_empty()).then(|| format!("a JSON object with the fields {}", fields.join(", ")))
}

/// A `$ref` followed to its schema.
fn resolve(schema: &'static Value) -> &'static Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        Some(name) => doc()
            .get("components")
            .and_then(|c| c.get("schemas"))
            .and_then(|s| s.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

/// The route's parameters in `place` (`query`, `path`): (name, schema).
fn route_params(req: &HttpRequest, place: &str) -> Vec<(String, &'static Value)> {
    let Some(list) = operation(req)
        .and_then(|op| op.get("parameters"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some(place))
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_owned();
            Some((name, p.get("schema").map(resolve).unwrap_or(&Value::Null)))
        })
        .collect()
}

/// The JSON type a schema names (`["integer", "null"]` is `integer`).
fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(s) => Some(s),
        Value::Array(a) => a.iter().filter_map(Value::as_str).find(|t| *t != "null"),
        _ => None,
    }
}

/// Why `value` is not what `schema` takes (as "a whole number ..."), or
/// None when it is (or the schema cannot tell).
fn value_problem(value: &str, schema: &Value) -> Option<String> {
    if let Some(words) = schema.get("enum").and_then(Value::as_array) {
        let words: Vec<&str> = words.iter().filter_map(Value::as_str).collect();
        return (!words.is_empty() && !words.contains(&value))
            .then(|| format!("one of {}", words.join(", ")));
    }
    match schema_type(schema)? {
        "boolean" => (!matches!(value, "true" | "false")).then(|| "true or false".to_owned()),
        "integer" => {
            let unsigned = schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| m >= 0.0);
            let ok = if unsigned {
                value.parse::<u64>().is_ok()
            } else {
                value.parse::<i64>().is_ok()
            };
            (!ok).then(|| describe_schema(schema))
        }
        "number" => value
            .parse::<f64>()
            .is_err()
            .then(|| describe_schema(schema)),
        _ => None,
    }
}

/// A parameter's type in words: "a whole number from 1 to 1000".
fn describe_schema(schema: &Value) -> String {
    let min = schema.get("minimum").and_then(Value::as_i64);
    let max = schema.get("maximum").and_then(Value::as_i64);
    match schema_type(schema) {
        Some("integer") => match (min, max) {
            (Some(a), Some(b)) => format!("a whole number from {a} to {b}"),
            (Some(a), None) => format!("a whole number, {a} or more"),
            _ => "a whole number".into(),
        },
        Some("number") => "a number".into(),
        Some("boolean") => "true or false".into(),
        _ => "a string".into(),
    }
}

/// "limit (a whole number from 1 to 1000), after (a string)".
fn describe_params(params: &[(String, &Value)]) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    Some(
        params
            .iter()
            .map(|(n, s)| format!("{n} ({})", describe_schema(s)))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_in_the_apis_words() {
        let cases = [
            "missing field `tag`",
            "unknown field `x`, expected one of `component`, `tag`",
            "unknown variant `zip`, expected one of `tar.zst`, `tar.gz`",
            "invalid type: string \"1\", expected u32",
            "invalid type: map, expected a sequence",
            "invalid type: integer `5`, expected struct WantedItem",
            "invalid value: integer `-1`, expected usize",
            "invalid length 2, expected a tuple of size 3",
            "data did not match any variant of untagged enum MissingRequest",
            "invalid type: sequence, expected enum JobState",
            "something odd:: happened",
        ];
        for c in cases {
            let said = data_problem(c, "field");
            assert!(!speaks_rust(&said), "{c} -> {said}");
        }
        assert_eq!(
            data_problem("missing field `tag`", "field"),
            "lacks the field \"tag\""
        );
        assert_eq!(
            data_problem("invalid type: string \"1\", expected u32", "field"),
            "has the string \"1\" where a whole number (0 or more) is expected"
        );
    }
}
