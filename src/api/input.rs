//! Request input shared by the handlers: JSON bodies and query strings that fail to parse
//! become a 400 in the one error shape, with what was wrong.

use super::error::ApiError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Json, Query};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// `cursor` and `limit` of a paged list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// `next_cursor` from the previous page
    pub cursor: Option<String>,
    /// 1 to 1000, default 100
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

impl Page {
    /// The page size: 1 to 1000, default 100.
    pub fn size(&self) -> Result<i64, ApiError> {
        limit(self.limit.as_deref(), 100, 1000)
    }
}

pub fn body<T>(r: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    r.map(|Json(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_body", e.body_text()))
}

pub fn query<T>(r: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    r.map(|Query(v)| v)
        .map_err(|e| ApiError::bad_request("invalid_parameter", e.body_text()))
}

/// `limit` between 1 and `max`, `default` when absent.
pub fn limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                format!("limit={s:?}: expected 1 to {max}"),
            )),
        },
    }
}

/// A numeric id cursor (the last id of the previous page).
pub fn id_cursor(raw: Option<&str>) -> Result<Option<i64>, ApiError> {
    raw.map(|s| {
        s.parse::<i64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("cursor {s:?} was not issued by this API"),
            )
        })
    })
    .transpose()
}

/// The cursor for the page after `rows`: the last row's key when the page is full.
pub fn next_cursor<T>(rows: &[T], limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(key))
        .flatten()
}

/// Query parameter `name`, an RFC 3339 time, when present.
pub fn parse_time(name: &str, v: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    v.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                ApiError::bad_request(
                    "invalid_parameter",
                    format!("{name}={s:?} is not RFC 3339: {e}"),
                )
            })
    })
    .transpose()
}
