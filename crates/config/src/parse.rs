//! Shared text -> typed value decoding with key paths and positions.
//!
//! Both YAML (serde-saphyr) and TOML (toml) deserialise straight from the
//! text, so a type error deep in the document still knows where it is;
//! serde_path_to_error adds the key path (`http.routers.web.priority`).

use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;

/// Input syntax.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
}

impl Format {
    /// The format a file name implies; `None` for other extensions.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            _ => None,
        }
    }
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A map key or struct field.
    Key(String),
    /// A list index.
    Index(usize),
}

/// Renders `a.b[0].c`.
pub struct DisplayPath<'a>(pub &'a [Segment]);

impl fmt::Display for DisplayPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for seg in self.0 {
            match seg {
                Segment::Key(k) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(k)?;
                }
                Segment::Index(i) => write!(f, "[{i}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

/// A decoding failure: the reason plus whatever location is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Key path down to the offending value; empty for syntax errors at the
    /// top or when unknown.
    pub path: Vec<Segment>,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// The reason, without location decorations.
    pub message: String,
}

fn convert_path(path: &serde_path_to_error::Path) -> Vec<Segment> {
    path.iter()
        .filter_map(|seg| match seg {
            serde_path_to_error::Segment::Seq { index } => Some(Segment::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Segment::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// 1-based (line, column) of a byte offset; columns count characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// True when the text holds no YAML content (only blanks, comments and
/// document markers); such a file is an empty configuration.
fn yaml_is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// Decodes `text` into `T`.
pub fn decode<T: DeserializeOwned + Default>(format: Format, text: &str) -> Result<T, Failure> {
    match format {
        Format::Yaml => decode_yaml(text),
        Format::Toml => decode_toml(text),
    }
}

fn decode_yaml<T: DeserializeOwned + Default>(text: &str) -> Result<T, Failure> {
    if yaml_is_blank(text) {
        return Ok(T::default());
    }
    let mut path = Vec::new();
    let options = serde_saphyr::options! { with_snippet: false };
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Option<T>>(de).map_err(|e| {
            path = convert_path(e.path());
            e.into_inner()
        })
    });
    match result {
        Ok(v) => Ok(v.unwrap_or_default()),
        Err(e) => {
            let loc = e.location();
            let line = loc.map(|l| l.line() as usize).filter(|l| *l > 0);
            let column = loc.map(|l| l.column() as usize).filter(|c| *c > 0);
            Err(Failure {
                path,
                line,
                column,
                message: yaml_message(&e),
            })
        }
    }
}

/// The error text without serde-saphyr's location suffix.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    // serde-saphyr appends " at line N, column M" (the location is reported
    // separately by us).
    match full.rfind(" at line ") {
        Some(i) if full[i..].contains("column") => full[..i].to_string(),
        _ => full,
    }
}

fn decode_toml<T: DeserializeOwned>(text: &str) -> Result<T, Failure> {
    let located = |e: &toml::de::Error, path: Vec<Segment>| {
        let (line, column) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Failure {
            path,
            line,
            column,
            message: e.message().trim_end().to_string(),
        }
    };
    let de = toml::Deserializer::parse(text).map_err(|e| located(&e, Vec::new()))?;
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = convert_path(e.path());
        let inner = e.into_inner();
        located(&inner, path)
    })
}
