//! A small serde `Deserializer` over a parsed `toml::Table`, behind
//! [`crate::from_toml`].
//!
//! It does what `toml::Table`'s own `Deserializer` does, case by case and
//! with the same error texts (`in `key.path`` included; one exception: a
//! struct is read from a table only, see `deserialize_struct`), but its error is one
//! pointer wide and its map keys go to the field visitors as plain strings:
//! the code serde derives for every plan, manifest and compatibility type is
//! instantiated with it, so that is where the agent's binary size goes.

use serde::de::{self, DeserializeSeed, IntoDeserializer, Unexpected, Visitor};
use serde::forward_to_deserialize_any;
use toml::{Table, Value};

/// A deserialisation error: the message and the keys leading to the value,
/// shown as `toml::de::Error` shows an error without a document span.
#[derive(Debug)]
pub(crate) struct Error(Box<(String, Vec<String>)>);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (message, keys) = &*self.0;
        writeln!(f, "{message}")?;
        if !keys.is_empty() {
            writeln!(f, "in `{}`", keys.join("."))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Error(Box::new((msg.to_string(), Vec::new())))
    }
}

/// Deserialises `T` from a parsed table.
pub(crate) fn from_table<T: de::DeserializeOwned>(table: Table) -> Result<T, Error> {
    T::deserialize(De(Value::Table(table)))
}

/// A value as a deserializer (`toml::Value`'s rules).
struct De(Value);

impl<'de> de::Deserializer<'de> for De {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Boolean(v) => visitor.visit_bool(v),
            Value::Integer(n) => visitor.visit_i64(n),
            Value::Float(n) => visitor.visit_f64(n),
            Value::String(v) => visitor.visit_string(v),
            Value::Datetime(v) => visitor.visit_string(v.to_string()),
            Value::Array(v) => {
                let len = v.len();
                let mut seq = Seq(v.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                if seq.0.len() == 0 {
                    Ok(out)
                } else {
                    Err(de::Error::invalid_length(len, &"fewer elements in array"))
                }
            }
            Value::Table(v) => visit_table(v, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::String(variant) => visitor.visit_enum(variant.into_deserializer()),
            Value::Table(variant) => match variant.len() {
                0 => Err(de::Error::custom(
                    "wanted exactly 1 element, found 0 elements",
                )),
                1 => visitor.visit_enum(Map {
                    iter: variant.into_iter(),
                    value: None,
                }),
                _ => Err(de::Error::custom(
                    "wanted exactly 1 element, more than 1 element",
                )),
            },
            _ => Err(de::Error::invalid_type(
                Unexpected::UnitVariant,
                &"string only",
            )),
        }
    }

    // A struct is read from a table only: `toml` also takes an array of the
    // fields in order, which no plan, manifest or table is written as, and
    // the `visit_seq` serde derives for every struct would be linked into
    // the agent for it (27,296 bytes of release agent: 1,048,560 ->
    // 1,021,264). Any other value gets `toml`'s error
    // (`invalid type: sequence, expected struct AgentPlan`).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Table(v) => self::visit_table(v, visitor),
            other => Err(not_a_table(&other, &visitor)),
        }
    }

    // `None` is a missing field, so a present value is `Some`.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    // No contract type holds a TOML datetime, the one struct `toml` treats
    // apart.
    forward_to_deserialize_any! {
        bool u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 char str string unit seq
        bytes byte_buf map unit_struct tuple_struct
        tuple ignored_any identifier
    }
}

/// A table's entries to `visitor`, all of them read.
fn visit_table<'de, V: Visitor<'de>>(table: Table, visitor: V) -> Result<V::Value, Error> {
    let len = table.len();
    let mut map = Map {
        iter: table.into_iter(),
        value: None,
    };
    let out = visitor.visit_map(&mut map)?;
    if map.iter.len() == 0 {
        Ok(out)
    } else {
        Err(de::Error::invalid_length(len, &"fewer elements in map"))
    }
}

/// The error for a value that is not a table where a struct is wanted:
/// the words of the default `Visitor` methods `toml` would have called.
fn not_a_table(value: &Value, expected: &dyn de::Expected) -> Error {
    let text;
    let unexpected = match value {
        Value::Boolean(v) => Unexpected::Bool(*v),
        Value::Integer(n) => Unexpected::Signed(*n),
        Value::Float(n) => Unexpected::Float(*n),
        Value::String(v) => Unexpected::Str(v),
        // Read as its text, as `toml` does.
        Value::Datetime(v) => {
            text = v.to_string();
            Unexpected::Str(&text)
        }
        Value::Array(_) => Unexpected::Seq,
        Value::Table(_) => Unexpected::Map,
    };
    de::Error::invalid_type(unexpected, expected)
}

/// A table key: a string (`toml::Value::String`'s rules, for the
/// deserializers a key meets), lent to the visitor.
struct Key<'a>(&'a str);

impl<'de> de::Deserializer<'de> for Key<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_str(self.0)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(self.0.into_deserializer())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    forward_to_deserialize_any! {
        bool u8 u16 u32 u64 i8 i16 i32 i64 f32 f64 char str string unit seq
        bytes byte_buf map unit_struct tuple_struct struct
        tuple ignored_any identifier
    }
}

/// An array's elements.
struct Seq(std::vec::IntoIter<Value>);

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.0.next() {
            Some(value) => seed.deserialize(De(value)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A table's entries; the key of the value being read names it in errors.
struct Map {
    iter: <Table as IntoIterator>::IntoIter,
    value: Option<(String, Value)>,
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = Error;

    fn next_key_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some((key, value)) => {
                let out = seed.deserialize(Key(&key)).map(Some);
                self.value = Some((key, value));
                out
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, Error> {
        let Some((key, value)) = self.value.take() else {
            return Err(de::Error::custom("value is missing"));
        };
        seed.deserialize(De(value)).map_err(|e| with_key(e, key))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.iter.len())
    }
}

/// Puts `key` in front of the error's key path.
#[inline(never)]
fn with_key(mut error: Error, key: String) -> Error {
    error.0.1.insert(0, key);
    error
}

impl<'de> de::EnumAccess<'de> for Map {
    type Error = Error;
    type Variant = Variant;

    fn variant_seed<V: DeserializeSeed<'de>>(
        mut self,
        seed: V,
    ) -> Result<(V::Value, Variant), Error> {
        let Some((key, value)) = self.iter.next() else {
            return Err(de::Error::custom(
                "expected table with exactly 1 entry, found empty table",
            ));
        };
        let variant = seed.deserialize(key.into_deserializer())?;
        Ok((variant, Variant(value)))
    }
}

/// The value of a `{ variant = value }` table. The contract's enums have
/// unit variants only; the other kinds are read as `toml` reads them, but
/// for the wording of a tuple-length error.
struct Variant(Value);

impl<'de> de::VariantAccess<'de> for Variant {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.0 {
            Value::Array(values) if values.is_empty() => Ok(()),
            Value::Array(_) => Err(de::Error::custom("expected empty array")),
            Value::Table(values) if values.is_empty() => Ok(()),
            Value::Table(_) => Err(de::Error::custom("expected empty table")),
            e => Err(de::Error::custom(format!(
                "expected table, found {}",
                e.type_str()
            ))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(De(self.0))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let values = match self.0 {
            Value::Array(values) => values,
            Value::Table(values) => values
                .into_iter()
                .enumerate()
                .map(|(index, (key, value))| match key.parse::<usize>() {
                    Ok(key_index) if key_index == index => Ok(value),
                    Ok(_) | Err(_) => Err(de::Error::custom(format!(
                        "expected table key `{index}`, but was `{key}`"
                    ))),
                })
                .collect::<Result<Vec<_>, Error>>()?,
            e => {
                return Err(de::Error::custom(format!(
                    "expected table, found {}",
                    e.type_str()
                )));
            }
        };
        if values.len() == len {
            de::Deserializer::deserialize_any(De(Value::Array(values)), visitor)
        } else {
            Err(de::Error::custom(format!(
                "expected tuple with length {len}"
            )))
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_any(De(self.0), visitor)
    }
}
