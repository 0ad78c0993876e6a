//! REP 2011 type descriptions and their `RIHS01` hashes, computed as ROS 2 computes them.
//!
//! ROS 2 (Iron and later) identifies a message type by the SHA-256 of its *type description*:
//! the type's fields (name, type id, capacities, nested type name) and, sorted by name, those
//! of every type it refers to, written as JSON exactly as Python's `json.dumps` writes it with
//! its default separators (`", "` and `": "`) and the keys in this order:
//!
//! ```text
//! {"type_description": {"type_name": "std_msgs/msg/String", "fields": [{"name": "data",
//!  "type": {"type_id": 17, "capacity": 0, "string_capacity": 0, "nested_type_name": ""}}]},
//!  "referenced_type_descriptions": []}
//! ```
//!
//! (on one line; `rosidl_generator_type_description`). Default values and comments are not
//! part of the hashed text. The hash is written `RIHS01_<64 lowercase hex digits>`; rmw_zenoh
//! puts it in every key and liveliness token.
//!
//! ```
//! use sinew_msgs::{Message, StringMsg};
//! let h = sinew_msgs::ros2::type_hash(StringMsg::DEF).unwrap();
//! assert_eq!(
//!     h.to_string(),
//!     "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
//! );
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::MsgDef;

/// `type_description_interfaces/msg/FieldType` ids of the element types.
mod tid {
    pub const NESTED_TYPE: u8 = 1;
    pub const INT8: u8 = 2;
    pub const UINT8: u8 = 3;
    pub const INT16: u8 = 4;
    pub const UINT16: u8 = 5;
    pub const INT32: u8 = 6;
    pub const UINT32: u8 = 7;
    pub const INT64: u8 = 8;
    pub const UINT64: u8 = 9;
    pub const FLOAT: u8 = 10;
    pub const DOUBLE: u8 = 11;
    pub const BOOLEAN: u8 = 15;
    pub const BYTE: u8 = 16;
    pub const STRING: u8 = 17;
    pub const WSTRING: u8 = 18;
    pub const BOUNDED_STRING: u8 = 21;
    pub const BOUNDED_WSTRING: u8 = 22;
    /// Added to the element's id for a fixed-size array `T[N]`.
    pub const ARRAY: u8 = 48;
    /// ... for a bounded sequence `T[<=N]`.
    pub const BOUNDED_SEQUENCE: u8 = 96;
    /// ... for an unbounded sequence `T[]`.
    pub const UNBOUNDED_SEQUENCE: u8 = 144;
}

/// A message definition that cannot be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("type description of {type_name}: {reason}")]
pub struct TypeDescriptionError {
    /// The type whose definition has the defect.
    pub type_name: String,
    /// What is wrong.
    pub reason: String,
}

/// The type of one field (`type_description_interfaces/msg/FieldType`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldType {
    /// Element type id plus the array/sequence offset.
    pub type_id: u8,
    /// Array size or sequence bound (0 otherwise).
    pub capacity: u64,
    /// Bound of a bounded string (0 otherwise).
    pub string_capacity: u64,
    /// `pkg/msg/Name` of a nested type ("" otherwise).
    pub nested_type_name: String,
}

/// One field (`type_description_interfaces/msg/Field`, without its default value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name.
    pub name: String,
    /// Its type.
    pub field_type: FieldType,
}

/// One type's fields (`type_description_interfaces/msg/IndividualTypeDescription`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndividualTypeDescription {
    /// `pkg/msg/Name`.
    pub type_name: String,
    /// The fields in declaration order.
    pub fields: Vec<Field>,
}

/// A type and every type it refers to (`type_description_interfaces/msg/TypeDescription`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDescription {
    /// The type itself.
    pub type_description: IndividualTypeDescription,
    /// Every type it refers to, directly or not, sorted by name.
    pub referenced_type_descriptions: Vec<IndividualTypeDescription>,
}

/// A `RIHS01` type hash: the SHA-256 of a [`TypeDescription`]'s hashed JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeHash(pub [u8; 32]);

/// The prefix of a version-1 ROS interface hash string.
pub const RIHS01_PREFIX: &str = "RIHS01_";

impl std::fmt::Display for TypeHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(RIHS01_PREFIX)?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TypeHash {
    type Err = String;

    /// Parses `RIHS01_<64 hex digits>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not RIHS01_ followed by 64 hex digits");
        let hex = s.strip_prefix(RIHS01_PREFIX).ok_or_else(bad)?;
        if hex.len() != 64 || !hex.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

/// The `RIHS01` hash of `def`: the SHA-256 of [`TypeDescription::hashed_json`].
pub fn type_hash(def: &MsgDef) -> Result<TypeHash, TypeDescriptionError> {
    Ok(TypeDescription::of(def)?.hash())
}

impl TypeDescription {
    /// The description of `def` and of the types it uses (found among `def.deps`, transitively).
    pub fn of(def: &MsgDef) -> Result<Self, TypeDescriptionError> {
        let mut known: BTreeMap<&'static str, &'static MsgDef> = BTreeMap::new();
        collect(def, &mut known);
        let top = describe(def)?;
        let mut referenced: BTreeMap<String, IndividualTypeDescription> = BTreeMap::new();
        let mut todo: Vec<String> = nested_names(&top);
        while let Some(name) = todo.pop() {
            if name == top.type_name || referenced.contains_key(&name) {
                continue;
            }
            let dep = known
                .get(name.as_str())
                .ok_or_else(|| TypeDescriptionError {
                    type_name: def.name.to_owned(),
                    reason: format!("refers to {name}, which is not among its dependencies"),
                })?;
            let d = describe(dep)?;
            todo.extend(nested_names(&d));
            referenced.insert(name, d);
        }
        Ok(Self {
            type_description: top,
            referenced_type_descriptions: referenced.into_values().collect(),
        })
    }

    /// The JSON text ROS 2 hashes (one line, Python's default separators).
    pub fn hashed_json(&self) -> String {
        let mut s = String::from("{\"type_description\": ");
        write_individual(&mut s, &self.type_description);
        s.push_str(", \"referenced_type_descriptions\": [");
        for (i, d) in self.referenced_type_descriptions.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            write_individual(&mut s, d);
        }
        s.push_str("]}");
        s
    }

    /// The `RIHS01` hash.
    pub fn hash(&self) -> TypeHash {
        TypeHash(Sha256::digest(self.hashed_json().as_bytes()).into())
    }
}

fn collect(def: &MsgDef, known: &mut BTreeMap<&'static str, &'static MsgDef>) {
    for dep in def.deps {
        if known.insert(dep.name, dep).is_none() {
            collect(dep, known);
        }
    }
}

fn nested_names(d: &IndividualTypeDescription) -> Vec<String> {
    d.fields
        .iter()
        .filter(|f| !f.field_type.nested_type_name.is_empty())
        .map(|f| f.field_type.nested_type_name.clone())
        .collect()
}

fn write_individual(s: &mut String, d: &IndividualTypeDescription) {
    // Names are checked to be ASCII identifiers and type names, so nothing needs escaping.
    let _ = write!(s, "{{\"type_name\": \"{}\", \"fields\": [", d.type_name);
    for (i, f) in d.fields.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let t = &f.field_type;
        let _ = write!(
            s,
            "{{\"name\": \"{}\", \"type\": {{\"type_id\": {}, \"capacity\": {}, \"string_capacity\": {}, \"nested_type_name\": \"{}\"}}}}",
            f.name, t.type_id, t.capacity, t.string_capacity, t.nested_type_name
        );
    }
    s.push_str("]}");
}

/// One type's fields, from its `.msg` text.
fn describe(def: &MsgDef) -> Result<IndividualTypeDescription, TypeDescriptionError> {
    let err = |reason: String| TypeDescriptionError {
        type_name: def.name.to_owned(),
        reason,
    };
    let package = def
        .name
        .split('/')
        .next()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| err("the type name is not pkg/msg/Name".into()))?;
    let mut fields = Vec::new();
    for raw in def.text.lines() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(ty), Some(name)) = (parts.next(), parts.next()) else {
            return Err(err(format!("line {line:?} is not `TYPE NAME`")));
        };
        // `TYPE NAME=VALUE` declares a constant: not a field.
        if name.contains('=') || parts.clone().next().is_some_and(|p| p.starts_with('=')) {
            continue;
        }
        if !is_identifier(name) {
            return Err(err(format!("field name {name:?} is not an identifier")));
        }
        let field_type = parse_type(ty, package).map_err(err)?;
        fields.push(Field {
            name: name.to_owned(),
            field_type,
        });
    }
    if fields.is_empty() {
        // As rosidl does for an empty message.
        fields.push(Field {
            name: "structure_needs_at_least_one_member".into(),
            field_type: FieldType {
                type_id: tid::UINT8,
                capacity: 0,
                string_capacity: 0,
                nested_type_name: String::new(),
            },
        });
    }
    Ok(IndividualTypeDescription {
        type_name: def.name.to_owned(),
        fields,
    })
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_bound(s: &str, what: &str) -> Result<u64, String> {
    s.parse::<u64>()
        .map_err(|_| format!("{what} bound {s:?} is not a number"))
}

/// A `.msg` field type (`float64[]`, `string<=8`, `std_msgs/Header`, `Point[3]`...).
fn parse_type(ty: &str, package: &str) -> Result<FieldType, String> {
    let (base, offset, capacity) = match ty.split_once('[') {
        None => (ty, 0, 0),
        Some((base, rest)) => {
            let inner = rest
                .strip_suffix(']')
                .ok_or_else(|| format!("type {ty:?}: unclosed ["))?;
            if inner.is_empty() {
                (base, tid::UNBOUNDED_SEQUENCE, 0)
            } else if let Some(n) = inner.strip_prefix("<=") {
                (base, tid::BOUNDED_SEQUENCE, parse_bound(n, "sequence")?)
            } else {
                (base, tid::ARRAY, parse_bound(inner, "array")?)
            }
        }
    };
    let plain = |id: u8| (id, 0u64, String::new());
    let (id, string_capacity, nested) = match base {
        "bool" => plain(tid::BOOLEAN),
        "byte" => plain(tid::BYTE),
        // rosidl maps the .msg `char` to IDL uint8.
        "char" | "uint8" => plain(tid::UINT8),
        "int8" => plain(tid::INT8),
        "int16" => plain(tid::INT16),
        "uint16" => plain(tid::UINT16),
        "int32" => plain(tid::INT32),
        "uint32" => plain(tid::UINT32),
        "int64" => plain(tid::INT64),
        "uint64" => plain(tid::UINT64),
        "float32" => plain(tid::FLOAT),
        "float64" => plain(tid::DOUBLE),
        "string" => plain(tid::STRING),
        "wstring" => plain(tid::WSTRING),
        _ => {
            if let Some(n) = base.strip_prefix("string<=") {
                (
                    tid::BOUNDED_STRING,
                    parse_bound(n, "string")?,
                    String::new(),
                )
            } else if let Some(n) = base.strip_prefix("wstring<=") {
                (
                    tid::BOUNDED_WSTRING,
                    parse_bound(n, "wstring")?,
                    String::new(),
                )
            } else {
                (tid::NESTED_TYPE, 0, nested_type_name(base, package)?)
            }
        }
    };
    Ok(FieldType {
        type_id: id + offset,
        capacity,
        string_capacity,
        nested_type_name: nested,
    })
}

/// `pkg/Name` -> `pkg/msg/Name`; a bare `Name` is in the same package (`Header` is
/// `std_msgs/msg/Header`, as rosidl has it).
fn nested_type_name(base: &str, package: &str) -> Result<String, String> {
    let parts: Vec<&str> = base.split('/').collect();
    let ok = |s: &str| is_identifier(s);
    match parts.as_slice() {
        ["Header"] => Ok("std_msgs/msg/Header".into()),
        [name] if ok(name) => Ok(format!("{package}/msg/{name}")),
        [pkg, name] if ok(pkg) && ok(name) => Ok(format!("{pkg}/msg/{name}")),
        [pkg, "msg", name] if ok(pkg) && ok(name) => Ok(format!("{pkg}/msg/{name}")),
        _ => Err(format!("unknown field type {base:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_types_follow_rosidl() {
        let t = |s: &str| parse_type(s, "pkg").expect(s);
        assert_eq!(t("float64[]").type_id, 155);
        assert_eq!(t("string[]").type_id, 161);
        assert_eq!(t("uint8[]").type_id, 147);
        let arr = t("int32[3]");
        assert_eq!((arr.type_id, arr.capacity), (54, 3));
        let bounded = t("float32[<=5]");
        assert_eq!((bounded.type_id, bounded.capacity), (106, 5));
        let s = t("string<=8[]");
        assert_eq!((s.type_id, s.string_capacity), (165, 8));
        assert_eq!(t("Point[]").nested_type_name, "pkg/msg/Point");
        assert_eq!(t("Point[]").type_id, 145);
        assert_eq!(t("Header").nested_type_name, "std_msgs/msg/Header");
        assert!(parse_type("float64[", "pkg").is_err());
        assert!(parse_type("a/b/c/d", "pkg").is_err());
        assert!(parse_type("int32[x]", "pkg").is_err());
    }

    #[test]
    fn constants_comments_and_empty_messages() {
        static EMPTY: MsgDef = MsgDef {
            name: "std_msgs/msg/Empty",
            text: "# nothing\n",
            deps: &[],
        };
        let d = TypeDescription::of(&EMPTY).expect("describable");
        assert_eq!(
            d.type_description.fields[0].name,
            "structure_needs_at_least_one_member"
        );
        static CONST: MsgDef = MsgDef {
            name: "x_msgs/msg/C",
            text: "uint8 ONE=1\nint32 TWO = 2\nuint8 v # comment\n",
            deps: &[],
        };
        let d = TypeDescription::of(&CONST).expect("describable");
        assert_eq!(d.type_description.fields.len(), 1);
        static MISSING: MsgDef = MsgDef {
            name: "x_msgs/msg/M",
            text: "x_msgs/Other o\n",
            deps: &[],
        };
        assert!(TypeDescription::of(&MISSING).is_err());
    }

    #[test]
    fn hash_strings_round_trip() {
        let h: TypeHash = "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
            .parse()
            .expect("valid");
        assert_eq!(
            h.to_string(),
            "RIHS01_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
        );
        assert!("RIHS01_xyz".parse::<TypeHash>().is_err());
        assert!(
            "RIHS02_df668c740482bbd48fb39d76a70dfd4bd59db1288021743503259e948f6b1a18"
                .parse::<TypeHash>()
                .is_err()
        );
    }
}
