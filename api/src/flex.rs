//! Lenient number fields: seed clients send ids and pages as JSON numbers or as strings
//! (`"12"`), and forms always send strings. These deserializers take both and refuse anything
//! else with a clear message.

use serde::de::{self, Deserializer, Visitor};
use std::fmt;

struct I64Visitor;

impl<'de> Visitor<'de> for I64Visitor {
    type Value = Option<i64>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        i64::try_from(v)
            .map(Some)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            Ok(Some(v as i64))
        } else {
            Err(E::custom("expected an integer"))
        }
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::custom(format!("`{v}` is not an integer")))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(I64Visitor)
    }
}

/// `Option<i64>` from a number, a numeric string, an empty string (= absent) or null.
pub fn opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    d.deserialize_any(I64Visitor)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct P {
        #[serde(default, deserialize_with = "super::opt_i64")]
        n: Option<i64>,
    }

    #[test]
    fn numbers_and_numeric_strings_parse_and_garbage_is_refused() {
        assert_eq!(serde_json::from_str::<P>(r#"{"n":5}"#).unwrap().n, Some(5));
        assert_eq!(
            serde_json::from_str::<P>(r#"{"n":"7"}"#).unwrap().n,
            Some(7)
        );
        assert_eq!(serde_json::from_str::<P>(r#"{}"#).unwrap().n, None);
        assert_eq!(serde_json::from_str::<P>(r#"{"n":null}"#).unwrap().n, None);
        assert!(serde_json::from_str::<P>(r#"{"n":"x"}"#).is_err());
        assert!(serde_json::from_str::<P>(r#"{"n":1.5}"#).is_err());
        assert_eq!(serde_urlencoded::from_str::<P>("n=9").unwrap().n, Some(9));
        assert!(serde_urlencoded::from_str::<P>("n=abc").is_err());
    }
}
