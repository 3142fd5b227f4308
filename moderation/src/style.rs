//! Danmaku styles: the colour and display mode a chat message may carry. The gateway calls
//! [`validate`] when it rebuilds a chat message's `data` from the known fields, and keeps only
//! the canonical values it returns.
//!
//! - `color`: one of the 12 colours of [`PALETTE`] (any case), or any `#rrggbb` for accounts
//!   with the `vip` tag. Default white. Canonical form: lowercase `#rrggbb`.
//! - `mode`: `scroll` | `top` | `bottom`, or Bilibili's numbers 1 | 5 | 4 (as a number or a
//!   string). Default `scroll`. Top and bottom danmaku stay pinned for [`PINNED_MS`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The colours every account may use (Bilibili's palette, less its two greys-on-dark that read
/// badly over video), canonical lowercase.
pub const PALETTE: [&str; 12] = [
    "#ffffff", // white (default)
    "#fe0302", // red
    "#ff7204", // orange
    "#ffaa02", // amber
    "#ffd302", // yellow
    "#a0ee00", // lime
    "#00cd00", // green
    "#019899", // teal
    "#89d5ff", // sky
    "#4266be", // blue
    "#cc0273", // magenta
    "#9b9b9b", // grey
];
/// The default colour.
pub const DEFAULT_COLOR: &str = "#ffffff";
/// How long a top or bottom danmaku stays on screen.
pub const PINNED_MS: u32 = 4000;

/// Where a danmaku shows.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Right to left across the video (Bilibili 1).
    #[default]
    Scroll,
    /// Pinned at the top (Bilibili 5).
    Top,
    /// Pinned at the bottom (Bilibili 4).
    Bottom,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Scroll => "scroll",
            Mode::Top => "top",
            Mode::Bottom => "bottom",
        }
    }

    /// Bilibili's mode number.
    pub fn bilibili(self) -> u8 {
        match self {
            Mode::Scroll => 1,
            Mode::Top => 5,
            Mode::Bottom => 4,
        }
    }
}

/// A validated style, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Style {
    /// Lowercase `#rrggbb`.
    pub color: String,
    pub mode: Mode,
}

impl Default for Style {
    fn default() -> Self {
        Style {
            color: DEFAULT_COLOR.into(),
            mode: Mode::Scroll,
        }
    }
}

/// Why a style was refused; [`StyleError::slug`] is the error slug of the gateway's reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StyleError {
    #[error("color must be #rrggbb")]
    BadColor,
    #[error("only VIP accounts may use colours outside the palette")]
    VipColor,
    #[error("mode must be scroll, top or bottom")]
    BadMode,
}

impl StyleError {
    pub fn slug(self) -> &'static str {
        match self {
            StyleError::BadColor => "bad_color",
            StyleError::VipColor => "vip_color",
            StyleError::BadMode => "bad_mode",
        }
    }
}

/// Checks a colour string: `#rrggbb` in the palette, or any `#rrggbb` when `vip`.
pub fn color(c: &str, vip: bool) -> Result<String, StyleError> {
    let hex = c.strip_prefix('#').ok_or(StyleError::BadColor)?;
    if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(StyleError::BadColor);
    }
    let canonical = format!("#{}", hex.to_ascii_lowercase());
    if vip || PALETTE.contains(&canonical.as_str()) {
        Ok(canonical)
    } else {
        Err(StyleError::VipColor)
    }
}

/// Checks a mode: a name, or Bilibili's number as a number or a string.
pub fn mode(m: &Value) -> Result<Mode, StyleError> {
    let name = match m {
        Value::String(s) => s.as_str(),
        Value::Number(n) => match n.as_u64() {
            Some(1) => "scroll",
            Some(5) => "top",
            Some(4) => "bottom",
            _ => return Err(StyleError::BadMode),
        },
        _ => return Err(StyleError::BadMode),
    };
    match name {
        "scroll" | "1" => Ok(Mode::Scroll),
        "top" | "5" => Ok(Mode::Top),
        "bottom" | "4" => Ok(Mode::Bottom),
        _ => Err(StyleError::BadMode),
    }
}

/// Validates the `color` and `mode` fields of a chat message's `data` (absent or null = the
/// default). `vip`: the sender's account has the `vip` tag.
pub fn validate(
    color_field: Option<&Value>,
    mode_field: Option<&Value>,
    vip: bool,
) -> Result<Style, StyleError> {
    let color = match color_field {
        None | Some(Value::Null) => DEFAULT_COLOR.to_string(),
        Some(Value::String(s)) => color(s, vip)?,
        Some(_) => return Err(StyleError::BadColor),
    };
    let mode = match mode_field {
        None | Some(Value::Null) => Mode::Scroll,
        Some(m) => mode(m)?,
    };
    Ok(Style { color, mode })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_palette_is_twelve_distinct_canonical_colours() {
        let mut p = PALETTE.to_vec();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), 12);
        for c in PALETTE {
            assert_eq!(color(c, false).unwrap(), c);
        }
    }

    #[test]
    fn colours_outside_the_palette_need_vip() {
        assert_eq!(color("#FE0302", false).unwrap(), "#fe0302", "any case");
        assert_eq!(color("#123456", false), Err(StyleError::VipColor));
        assert_eq!(color("#ABCDEF", true).unwrap(), "#abcdef");
        for bad in ["fe0302", "#fe030", "#fe03022", "#gg0000", "red", "", "#"] {
            assert_eq!(color(bad, true), Err(StyleError::BadColor), "{bad}");
        }
    }

    #[test]
    fn modes_by_name_or_bilibili_number() {
        assert_eq!(mode(&json!("top")).unwrap(), Mode::Top);
        assert_eq!(mode(&json!(4)).unwrap(), Mode::Bottom);
        assert_eq!(mode(&json!("1")).unwrap(), Mode::Scroll);
        for bad in [json!("TOP"), json!(2), json!(-1), json!(true), json!([1])] {
            assert_eq!(mode(&bad), Err(StyleError::BadMode), "{bad}");
        }
        assert_eq!(Mode::Top.bilibili(), 5);
    }

    #[test]
    fn validate_defaults_and_refuses_with_a_slug() {
        assert_eq!(validate(None, None, false).unwrap(), Style::default());
        assert_eq!(
            validate(Some(&Value::Null), Some(&json!("bottom")), false).unwrap(),
            Style {
                color: DEFAULT_COLOR.into(),
                mode: Mode::Bottom
            }
        );
        assert_eq!(
            validate(Some(&json!(255)), None, true).unwrap_err().slug(),
            "bad_color"
        );
        assert_eq!(
            validate(Some(&json!("#010203")), None, false)
                .unwrap_err()
                .slug(),
            "vip_color"
        );
        assert_eq!(
            validate(None, Some(&json!("sideways")), false)
                .unwrap_err()
                .slug(),
            "bad_mode"
        );
    }
}
