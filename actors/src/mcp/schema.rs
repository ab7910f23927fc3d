//! The tools' JSON schemas as `tools/list` carries them: every coordinator pays for them in
//! its context, in every conversation, so they say what a model needs and no more.
//!
//! Generated schemas (schemars) are rewritten without losing a property:
//! - definitions are inlined (`$ref` → the definition), so nothing is repeated as prose;
//! - a choice of constants becomes an `enum` of the values;
//! - an optional argument is its type (`null` is still accepted, but never worth saying);
//! - generator noise goes: `$schema`, `format`, `examples`, `default`, `title`;
//! - descriptions are one line; an output schema keeps none (the model reads the result).

use serde_json::{Map, Value};

/// A JSON object, as rmcp holds schemas.
pub type Object = Map<String, Value>;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Arguments: descriptions kept, `null` left unsaid.
    Input,
    /// Results: no descriptions, every alternative kept.
    Output,
}

/// A tool's input schema as listed.
pub fn input(schema: &Object) -> Object {
    rewrite(schema, Mode::Input)
}

/// A tool's output schema as listed.
///
/// It names the fields every result carries (`required`) and no more: the full shape of
/// each result is documented, and listing it would cost every coordinator several
/// kilobytes of context per tool. A map (`context_list`) keeps its value type; a result of
/// one of several shapes (`pool_cancel`) keeps each shape's fields.
pub fn output(schema: &Object) -> Object {
    shallow(&rewrite(schema, Mode::Output))
}

/// How many of a result's fields its output schema names: the first ones, which say what
/// it is about (ids, status, output).
const OUTPUT_FIELDS: usize = 2;

/// `schema` reduced to its type, required fields, alternatives and map values.
fn shallow(schema: &Object) -> Object {
    let mut out = Object::new();
    for (k, v) in schema {
        match (k.as_str(), v) {
            ("required", Value::Array(fields)) => {
                let first = fields.iter().take(OUTPUT_FIELDS).cloned().collect();
                out.insert(k.clone(), Value::Array(first));
            }
            ("type", _) => {
                out.insert(k.clone(), v.clone());
            }
            ("additionalProperties", Value::Object(_)) => {
                out.insert(k.clone(), v.clone());
            }
            ("anyOf" | "oneOf", Value::Array(alts)) => {
                let alts = alts
                    .iter()
                    .map(|a| match a {
                        Value::Object(o) => Value::Object(shallow(o)),
                        other => other.clone(),
                    })
                    .collect();
                out.insert(k.clone(), Value::Array(alts));
            }
            _ => {}
        }
    }
    out
}

fn rewrite(schema: &Object, mode: Mode) -> Object {
    let empty = Object::new();
    let defs = match schema.get("$defs").or_else(|| schema.get("definitions")) {
        Some(Value::Object(d)) => d,
        _ => &empty,
    };
    match walk(&Value::Object(schema.clone()), defs, mode, 0) {
        Value::Object(mut o) => {
            // The parameters' own doc: the tool's description says it for a model.
            o.remove("description");
            if o.get("properties")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                o.remove("properties");
            }
            o
        }
        _ => unreachable!("an object stays an object"),
    }
}

/// How deep definitions may nest (a recursive type would otherwise never end).
const MAX_DEPTH: usize = 32;

fn walk(v: &Value, defs: &Object, mode: Mode, depth: usize) -> Value {
    let Value::Object(o) = v else {
        return v.clone();
    };
    assert!(depth < MAX_DEPTH, "schema nests deeper than {MAX_DEPTH}");
    let mut out = Object::new();
    if let Some(Value::String(r)) = o.get("$ref") {
        let name = r.rsplit('/').next().unwrap_or_default();
        let def = defs
            .get(name)
            .unwrap_or_else(|| panic!("schema refers to unknown definition {r}"));
        if let Value::Object(mut inner) = walk(def, defs, mode, depth + 1) {
            // A type's own doc is written for its readers in Rust; the field's doc is the
            // one written for a model.
            inner.remove("description");
            out = inner;
        }
    }
    for (k, val) in o {
        match k.as_str() {
            "$ref" | "$schema" | "$defs" | "definitions" | "format" | "examples" | "default"
            | "title" => {}
            "description" => {
                if let (Mode::Input, Value::String(s)) = (mode, val) {
                    out.insert(k.clone(), Value::String(one_line(s)));
                }
            }
            "properties" | "patternProperties" => {
                let props = match val {
                    Value::Object(p) => p
                        .iter()
                        .map(|(name, s)| (name.clone(), walk(s, defs, mode, depth + 1)))
                        .collect(),
                    _ => Object::new(),
                };
                out.insert(k.clone(), Value::Object(props));
            }
            // Unknown arguments are refused by name when called; not worth listing. `true`
            // is the default.
            "additionalProperties" if mode == Mode::Input && val.is_boolean() => {}
            // An unsigned integer: a negative one is refused by name when called.
            "minimum" if mode == Mode::Input && val == &Value::from(0) => {}
            "items" | "additionalProperties" | "not" => {
                out.insert(k.clone(), walk(val, defs, mode, depth + 1));
            }
            "anyOf" | "oneOf" | "allOf" => {
                let alts = match val {
                    Value::Array(a) => a.iter().map(|s| walk(s, defs, mode, depth + 1)).collect(),
                    _ => Vec::new(),
                };
                out.insert(k.clone(), Value::Array(alts));
            }
            _ => {
                out.insert(k.clone(), val.clone());
            }
        }
    }
    simplify(out, mode)
}

/// A doc comment's paragraph as one line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The type of a schema that is a scalar type with at most bounds.
fn plain_type(s: &Value) -> Option<Value> {
    let o = s.as_object()?;
    let t = o.get("type")?.as_str()?;
    let scalar = matches!(t, "number" | "integer" | "string" | "boolean");
    let only_bounds = o.keys().all(|k| {
        matches!(
            k.as_str(),
            "type" | "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum"
        )
    });
    (scalar && only_bounds).then(|| Value::from(t))
}

fn is_null(s: &Value) -> bool {
    s.get("type") == Some(&Value::String("null".into())) || s.get("const") == Some(&Value::Null)
}

fn simplify(mut o: Object, mode: Mode) -> Value {
    for key in ["oneOf", "anyOf"] {
        let Some(Value::Array(alts)) = o.get(key) else {
            continue;
        };
        let nullable = alts.iter().any(is_null);
        let rest: Vec<&Value> = alts.iter().filter(|s| !is_null(s)).collect();
        let consts: Option<Vec<Value>> = rest.iter().map(|s| s.get("const").cloned()).collect();
        if let Some(mut values) = consts.filter(|c| !c.is_empty()) {
            // A choice of constants: the values are the schema.
            o.remove(key);
            o.remove("type");
            if nullable && mode == Mode::Output {
                values.push(Value::Null);
            }
            o.insert("enum".into(), Value::Array(values));
        } else if mode == Mode::Input
            && !rest.is_empty()
            && rest.iter().all(|s| plain_type(s).is_some())
        {
            // "a number or a string": one type list; each alternative's bounds are checked
            // when the arguments are read, and named in the field's description.
            let types: Vec<Value> = rest.iter().filter_map(|s| plain_type(s)).collect();
            o.remove(key);
            o.insert(
                "type".into(),
                if types.len() == 1 {
                    types[0].clone()
                } else {
                    Value::Array(types)
                },
            );
        } else if nullable && rest.len() == 1 && mode == Mode::Input {
            // "X or null" for an argument: X (null is accepted, never worth saying).
            let Value::Object(inner) = rest[0].clone() else {
                continue;
            };
            o.remove(key);
            for (k, v) in inner {
                if k == "description" && o.contains_key("description") {
                    continue;
                }
                o.insert(k, v);
            }
        }
    }
    if let (Mode::Input, Some(Value::Array(types))) = (mode, o.get("type")) {
        let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        let t = match kept.len() {
            1 => kept[0].clone(),
            _ => Value::Array(kept),
        };
        o.insert("type".into(), t);
    }
    Value::Object(o)
}

/// Declares `fields` without repeating their schemas: top-level arguments described once,
/// in another tool's schema (the tool's description says which). They are still checked
/// by name and type when the tool is called.
pub fn described_elsewhere(schema: &mut Object, fields: &[&str]) {
    if let Some(Value::Object(props)) = schema.get_mut("properties") {
        for f in fields {
            if let Some(p) = props.get_mut(*f) {
                *p = Value::Object(Object::new());
            }
        }
    }
}

/// Every property path a schema declares (`a`, `a.b`, `steps[].prompt`), to show a rewrite
/// lost none.
pub fn property_paths(schema: &Object) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let defs = match schema.get("$defs") {
        Some(Value::Object(d)) => d.clone(),
        _ => Object::new(),
    };
    collect(&Value::Object(schema.clone()), &defs, "", &mut out, 0);
    out
}

fn collect(
    v: &Value,
    defs: &Object,
    prefix: &str,
    out: &mut std::collections::BTreeSet<String>,
    depth: usize,
) {
    let Value::Object(o) = v else { return };
    if depth > MAX_DEPTH {
        return;
    }
    if let Some(def) = o
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| defs.get(r.rsplit('/').next().unwrap_or_default()))
    {
        collect(def, defs, prefix, out, depth + 1);
    }
    if let Some(Value::Object(props)) = o.get("properties") {
        for (name, s) in props {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            out.insert(path.clone());
            collect(s, defs, &path, out, depth + 1);
        }
    }
    if let Some(items) = o.get("items") {
        collect(items, defs, &format!("{prefix}[]"), out, depth + 1);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alts)) = o.get(key) {
            for a in alts {
                collect(a, defs, prefix, out, depth + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        match v {
            Value::Object(o) => o,
            _ => panic!("not an object"),
        }
    }

    fn generated() -> Object {
        obj(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": false,
            "required": ["prompt"],
            "properties": {
                "prompt": { "type": "string", "description": "The task.\nAny size." },
                "effort": {
                    "anyOf": [{ "$ref": "#/$defs/Effort" }, { "type": "null" }],
                    "description": "Effort."
                },
                "limit": { "type": ["integer", "null"], "format": "uint32", "minimum": 0 },
                "steps": { "type": "array", "items": { "$ref": "#/$defs/Step" } }
            },
            "$defs": {
                "Effort": {
                    "description": "Long prose about effort.",
                    "oneOf": [
                        { "const": "low", "type": "string", "description": "low" },
                        { "const": "high", "type": "string", "description": "high" }
                    ]
                },
                "Step": {
                    "type": "object",
                    "properties": { "name": { "type": ["string", "null"], "description": "A name." } }
                }
            }
        }))
    }

    #[test]
    fn an_input_schema_keeps_every_property_and_loses_the_noise() {
        let s = generated();
        let c = input(&s);
        assert_eq!(property_paths(&c), property_paths(&s));
        assert_eq!(
            Value::Object(c),
            json!({
                "type": "object",
                "required": ["prompt"],
                "properties": {
                    "prompt": { "type": "string", "description": "The task. Any size." },
                    "effort": { "enum": ["low", "high"], "description": "Effort." },
                    "limit": { "type": "integer" },
                    "steps": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": { "name": { "type": "string", "description": "A name." } }
                        }
                    }
                }
            })
        );
    }

    #[test]
    fn a_number_or_a_string_is_one_type_list() {
        let s = obj(json!({
            "type": "object",
            "properties": { "t": { "$ref": "#/$defs/Timeout", "description": "Deadline." } },
            "$defs": { "Timeout": {
                "description": "A number of seconds or a duration.",
                "oneOf": [
                    { "type": "number", "exclusiveMinimum": 0 },
                    { "type": "string", "examples": ["5m"] }
                ]
            } }
        }));
        assert_eq!(
            input(&s)["properties"]["t"],
            json!({ "type": ["number", "string"], "description": "Deadline." })
        );
    }

    #[test]
    fn an_output_schema_names_the_first_fields_every_result_has() {
        let s = obj(json!({
            "type": "object",
            "required": ["task_id", "status", "output"],
            "properties": {
                "task_id": { "type": "string", "description": "Its id." },
                "status": { "$ref": "#/$defs/Status" },
                "output": { "type": ["string", "null"] }
            },
            "$defs": { "Status": { "enum": ["done", "failed"] } }
        }));
        assert_eq!(
            Value::Object(output(&s)),
            json!({ "type": "object", "required": ["task_id", "status"] })
        );
    }

    #[test]
    fn an_output_of_several_shapes_keeps_each_and_a_map_keeps_its_values() {
        let s = obj(json!({
            "type": "object",
            "anyOf": [{ "$ref": "#/$defs/A" }, { "$ref": "#/$defs/B" }],
            "$defs": {
                "A": { "type": "object", "required": ["a"], "properties": { "a": { "type": "string" } } },
                "B": { "type": "object", "required": ["b"], "properties": { "b": { "type": "string" } } }
            }
        }));
        assert_eq!(
            Value::Object(output(&s)),
            json!({ "type": "object", "anyOf": [
                { "type": "object", "required": ["a"] },
                { "type": "object", "required": ["b"] }
            ] })
        );
        let map = obj(json!({ "type": "object", "additionalProperties": { "type": "string" } }));
        assert_eq!(Value::Object(output(&map)), Value::Object(map.clone()));
    }

    #[test]
    fn arguments_described_elsewhere_are_declared_without_a_schema() {
        let mut c = input(&generated());
        described_elsewhere(&mut c, &["effort", "steps"]);
        assert_eq!(c["properties"]["effort"], json!({}));
        assert_eq!(c["properties"]["steps"], json!({}));
        assert_eq!(c["properties"]["prompt"]["type"], "string");
    }
}
