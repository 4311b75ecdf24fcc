//! Reading JSON request bodies field by field, so that every refusal names the field and says
//! what is wrong with it: unparseable JSON is a 400, a well-formed body that breaks a rule 422.

use super::error::ApiError;
use serde_json::{Map, Value};

/// Parses a request body as JSON.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("body is not valid JSON: {e}")))
}

fn invalid(message: String) -> ApiError {
    ApiError::unprocessable("invalid_field", message)
}

/// A JSON object whose keys are all in `allowed`; `at` names it in messages.
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Fields<'a> {
    pub fn new(value: &'a Value, at: &str, allowed: &[&str]) -> Result<Fields<'a>, ApiError> {
        let what = if at.is_empty() { "the body" } else { at };
        let map = value
            .as_object()
            .ok_or_else(|| invalid(format!("{what} must be a JSON object")))?;
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(invalid(format!(
                "{what}: unknown field {unknown:?} (allowed: {})",
                allowed.join(", ")
            )));
        }
        Ok(Fields {
            map,
            at: at.to_owned(),
        })
    }

    /// How messages name field `key`, e.g. `[3].vin`.
    pub fn name(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// A string of 1 to `max_len` characters; `None` when absent or null.
    pub fn opt_str(&self, key: &str, max_len: usize) -> Result<Option<String>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                Err(invalid(format!("{} must not be empty", self.name(key))))
            }
            Some(Value::String(s)) if s.chars().count() > max_len => Err(invalid(format!(
                "{} is longer than {max_len} characters",
                self.name(key)
            ))),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(invalid(format!("{} must be a string", self.name(key)))),
        }
    }

    /// `value` of field `key`, which must be present.
    pub fn required<T>(&self, key: &str, value: Option<T>) -> Result<T, ApiError> {
        value.ok_or_else(|| invalid(format!("{} is required", self.name(key))))
    }

    pub fn str(&self, key: &str, max_len: usize) -> Result<String, ApiError> {
        let value = self.opt_str(key, max_len)?;
        self.required(key, value)
    }

    /// A finite number within `range`; `None` when absent or null.
    pub fn opt_f64(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<f64>,
    ) -> Result<Option<f64>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if range.contains(&x) => Ok(Some(x)),
                _ => Err(invalid(format!(
                    "{} must be between {} and {}, got {n}",
                    self.name(key),
                    range.start(),
                    range.end()
                ))),
            },
            Some(_) => Err(invalid(format!("{} must be a number", self.name(key)))),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(format!("{} must be true or false", self.name(key)))),
        }
    }

    /// A string parsed with `parse`, whose error text is appended to the field name.
    pub fn parsed<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ApiError> {
        self.opt_str(key, 200)?
            .map(|s| parse(&s).map_err(|e| invalid(format!("{}: {e}", self.name(key)))))
            .transpose()
    }
}
