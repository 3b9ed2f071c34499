//! Conversions between JSON values and SQL values for each [`FieldType`].

use super::error::QueryError;
use super::schema::FieldType;
use base64ct::{Base64, Encoding};
use rusqlite::types::{Value as SqlValue, ValueRef};
use serde_json::{Map, Value, json};

/// Accept `[A-Za-z][A-Za-z0-9_]*` (or starting with `_`), at most `max_len` bytes.
pub(crate) fn validate_identifier(name: &str, max_len: usize) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("must not be empty".into());
    };
    if name.len() > max_len {
        return Err(format!("longer than {max_len} bytes"));
    }
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "{name:?} must be letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

/// How strictly a number must fit the field: stored values must be exact, values in filters
/// may be any number (an integer field compared with 2.5 is meaningful).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    Filter,
    Storage,
}

/// Convert a non-null JSON value to the SQL value a column of type `ty` holds, or explain why
/// it does not fit. `context` names the field for the error.
pub(crate) fn to_sql(
    ty: FieldType,
    value: &Value,
    context: &str,
    usage: Use,
) -> Result<SqlValue, QueryError> {
    let mismatch = || {
        QueryError::invalid(
            context,
            format!("expected a {} value, got {}", ty.name(), describe(value)),
        )
    };
    match ty {
        FieldType::Text => value
            .as_str()
            .map(|s| SqlValue::Text(s.to_owned()))
            .ok_or_else(mismatch),
        FieldType::Integer => {
            let Value::Number(number) = value else {
                return Err(mismatch());
            };
            if let Some(i) = number.as_i64() {
                Ok(SqlValue::Integer(i))
            } else if usage == Use::Filter {
                number.as_f64().map(SqlValue::Real).ok_or_else(mismatch)
            } else {
                Err(QueryError::invalid(
                    context,
                    format!("{number} is not a 64-bit integer"),
                ))
            }
        }
        FieldType::Real => match value {
            Value::Number(number) if usage == Use::Filter && number.is_i64() => {
                Ok(SqlValue::Integer(number.as_i64().unwrap_or_default()))
            }
            Value::Number(number) => number.as_f64().map(SqlValue::Real).ok_or_else(mismatch),
            _ => Err(mismatch()),
        },
        FieldType::Boolean => value
            .as_bool()
            .map(|b| SqlValue::Integer(i64::from(b)))
            .ok_or_else(mismatch),
        FieldType::Date => Ok(SqlValue::Text(date_from_json(value, context)?)),
        FieldType::Binary => Ok(SqlValue::Blob(binary_from_json(value, context)?)),
        FieldType::Json => {
            check_no_operator_keys(value, context)?;
            Ok(SqlValue::Text(value.to_string()))
        }
    }
}

/// Read a column of type `ty` back as JSON; `None` for SQL NULL (the field is absent).
pub(crate) fn from_sql(ty: FieldType, value: ValueRef<'_>) -> Result<Option<Value>, QueryError> {
    let bad = |what: &str| {
        QueryError::Sqlite(rusqlite::Error::InvalidColumnType(
            0,
            format!("{} column holding {what}", ty.name()),
            value.data_type(),
        ))
    };
    Ok(Some(match (ty, value) {
        (_, ValueRef::Null) => return Ok(None),
        (FieldType::Boolean, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (FieldType::Json, ValueRef::Text(text)) => {
            serde_json::from_slice(text).map_err(|_| bad("malformed JSON"))?
        }
        (FieldType::Binary, ValueRef::Blob(bytes)) => binary_to_json(bytes),
        (_, ValueRef::Integer(i)) => Value::from(i),
        (_, ValueRef::Real(r)) => serde_json::Number::from_f64(r)
            .map(Value::Number)
            .ok_or_else(|| bad("a non-finite number"))?,
        (_, ValueRef::Text(text)) => Value::String(String::from_utf8_lossy(text).into_owned()),
        (_, ValueRef::Blob(bytes)) => binary_to_json(bytes),
    }))
}

/// Canonical extended JSON for bytes.
pub(crate) fn binary_to_json(bytes: &[u8]) -> Value {
    json!({"$binary": {"base64": Base64::encode_string(bytes), "subType": "00"}})
}

/// Accept `{"$binary": "<base64>"}` or `{"$binary": {"base64": "...", "subType": "00"}}`.
pub(crate) fn binary_from_json(value: &Value, context: &str) -> Result<Vec<u8>, QueryError> {
    let encoded = match value.as_object().and_then(single_entry) {
        Some(("$binary", Value::String(b64))) => b64.as_str(),
        Some(("$binary", Value::Object(inner))) => inner
            .get("base64")
            .and_then(Value::as_str)
            .ok_or_else(|| QueryError::invalid(context, "$binary needs a base64 string"))?,
        _ => {
            return Err(QueryError::invalid(
                context,
                format!("expected {{\"$binary\": ...}}, got {}", describe(value)),
            ));
        }
    };
    Base64::decode_vec(encoded).map_err(|_| QueryError::invalid(context, "invalid base64"))
}

/// The only entry of a one-entry object.
pub(crate) fn single_entry(map: &Map<String, Value>) -> Option<(&str, &Value)> {
    if map.len() == 1 {
        map.iter().next().map(|(k, v)| (k.as_str(), v))
    } else {
        None
    }
}

/// A date as a string or `{"$date": string}`, normalized to `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn date_from_json(value: &Value, context: &str) -> Result<String, QueryError> {
    let text = match value {
        Value::String(s) => s.as_str(),
        Value::Object(map) => match single_entry(map) {
            Some(("$date", Value::String(s))) => s.as_str(),
            _ => {
                return Err(QueryError::invalid(
                    context,
                    "expected a date string or {\"$date\": string}",
                ));
            }
        },
        other => {
            return Err(QueryError::invalid(
                context,
                format!("expected a date, got {}", describe(other)),
            ));
        }
    };
    normalize_date(text).ok_or_else(|| {
        QueryError::invalid(
            context,
            format!(
                "{text:?} is not an ISO-8601 date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS with Z or \
                 an offset, whole seconds)"
            ),
        )
    })
}

/// Parse `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS(Z|+HH:MM|-HH:MM)` into UTC text.
pub fn normalize_date(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = bytes.get(range)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if bytes.get(4) != Some(&b'-') || bytes.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (hour, minute, second, offset_minutes) = if bytes.len() == 10 {
        (0, 0, 0, 0)
    } else {
        if !matches!(bytes.get(10), Some(b'T' | b't' | b' '))
            || bytes.get(13) != Some(&b':')
            || bytes.get(16) != Some(&b':')
        {
            return None;
        }
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let offset = match &bytes[19..] {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (number(20..22)?, number(23..25)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let minutes = h * 60 + m;
                if *sign == b'+' { minutes } else { -minutes }
            }
            _ => return None,
        };
        (hour, minute, second, offset)
    };
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_minutes * 60;
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    if !(0..=9999).contains(&y) {
        return None;
    }
    Some(format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    ))
}

/// The current time as a normalized date.
pub(crate) fn now_date() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if month <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        month,
        day,
    )
}

/// Refuse object keys starting with `$` inside stored JSON: they would read back as operators.
pub(crate) fn check_no_operator_keys(value: &Value, context: &str) -> Result<(), QueryError> {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key.starts_with('$') {
                    return Err(QueryError::invalid(
                        context,
                        format!("key {key:?} starts with '$'"),
                    ));
                }
                check_no_operator_keys(inner, context)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_no_operator_keys(item, context)),
        _ => Ok(()),
    }
}

/// A short description of a JSON value's type for error messages (never the value itself,
/// which may be large or sensitive).
pub(crate) fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_normalize_to_utc() {
        assert_eq!(
            normalize_date("2026-11-28").as_deref(),
            Some("2026-11-28T00:00:00Z")
        );
        assert_eq!(
            normalize_date("2026-11-28T21:21:38+01:00").as_deref(),
            Some("2026-11-28T20:21:38Z")
        );
        assert_eq!(
            normalize_date("2024-03-01T00:30:00+01:00").as_deref(),
            Some("2024-02-29T23:30:00Z")
        );
        assert_eq!(normalize_date("2026-02-29"), None);
        assert_eq!(normalize_date("2026-11-28T20:21:38.5Z"), None);
        assert_eq!(normalize_date("2026-11-28T20:21"), None);
        assert_eq!(normalize_date("yesterday"), None);
    }

    #[test]
    fn binary_round_trips_through_extended_json() {
        let json = binary_to_json(b"\x00\xffabc");
        assert_eq!(binary_from_json(&json, "f").unwrap(), b"\x00\xffabc");
        assert_eq!(
            binary_from_json(&json!({"$binary": "AP9hYmM="}), "f").unwrap(),
            b"\x00\xffabc"
        );
    }

    #[test]
    fn integers_must_be_exact_when_stored() {
        assert!(to_sql(FieldType::Integer, &json!(2.5), "n", Use::Storage).is_err());
        assert_eq!(
            to_sql(FieldType::Integer, &json!(2.5), "n", Use::Filter).unwrap(),
            SqlValue::Real(2.5)
        );
        assert!(to_sql(FieldType::Integer, &json!(u64::MAX), "n", Use::Storage).is_err());
    }
}
