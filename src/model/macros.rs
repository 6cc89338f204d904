//! The one macro every Terra object is defined with, and the small runtime it relies on.
//!
//! `#[serde(flatten)]` would buffer every object into an intermediate map before matching
//! fields, which is far too slow for hours of 1 Hz samples. Instead `terra_struct!` writes a
//! `visit_map` that matches known keys directly and moves only unknown keys into `extra`
//! (which does not allocate while empty), and a `Serialize` that writes the present fields
//! followed by the extras, so decoding and re-encoding is lossless.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserializer, Serialize};
use serde_json::{Map, Value};

/// JSON keys a model object did not recognise, kept verbatim (in key order) so they reach storage.
///
/// Boxed and optional because nearly every object has none: an empty `Extra` is one null pointer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extra(Option<Box<Map<String, Value>>>);

impl Extra {
    /// True when the object carried no unknown key.
    pub fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|m| m.is_empty())
    }

    /// Number of unknown keys.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// The raw value of an unknown key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.as_ref().and_then(|m| m.get(key))
    }

    /// Adds (or replaces, as JSON's last-key-wins does) an unknown key.
    pub fn insert(&mut self, key: String, value: Value) {
        self.0
            .get_or_insert_with(Default::default)
            .insert(key, value);
    }

    /// Iterates over the unknown keys and their raw values.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// The unknown keys as a JSON map, if there are any.
    pub fn as_map(&self) -> Option<&Map<String, Value>> {
        self.0.as_deref()
    }

    /// Writes the unknown keys into a map being serialised.
    #[doc(hidden)]
    pub fn serialize_into<M: SerializeMap>(&self, map: &mut M) -> Result<(), M::Error> {
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        Ok(())
    }
}

/// The known keys of an object, each with the shape of its value.
pub type FieldShapes = &'static [(&'static str, fn() -> Shape)];

/// Static description of which JSON keys a model type knows, used to prove schema coverage.
#[derive(Clone, Copy)]
pub enum Shape {
    /// A scalar, an open code, a timestamp or raw JSON: nothing nested to check.
    Leaf,
    /// A JSON array whose items have the given shape.
    Array(fn() -> Shape),
    /// A JSON object with these known keys (and any unknown ones, kept in `extra`).
    Object(FieldShapes),
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shape::Leaf => f.write_str("Leaf"),
            Shape::Array(inner) => f.debug_tuple("Array").field(&inner()).finish(),
            Shape::Object(fields) => f
                .debug_list()
                .entries(fields.iter().map(|(k, _)| k))
                .finish(),
        }
    }
}

/// Implemented by every model type: its static shape and a walk over the unknown fields it kept.
pub trait Model {
    /// The JSON keys this type models (for the coverage test and tooling).
    fn shape() -> Shape {
        Shape::Leaf
    }

    /// Calls `f` with every unknown key (and raw value) kept here or in any nested object.
    ///
    /// Storage can count these to notice when Terra starts sending fields the model lacks.
    fn for_each_unknown(&self, _f: &mut dyn FnMut(&str, &Value)) {}
}

impl<T: Model> Model for Option<T> {
    fn shape() -> Shape {
        T::shape()
    }
    fn for_each_unknown(&self, f: &mut dyn FnMut(&str, &Value)) {
        if let Some(v) = self {
            v.for_each_unknown(f);
        }
    }
}

impl<T: Model> Model for Vec<T> {
    fn shape() -> Shape {
        Shape::Array(T::shape)
    }
    fn for_each_unknown(&self, f: &mut dyn FnMut(&str, &Value)) {
        for v in self {
            v.for_each_unknown(f);
        }
    }
}

impl Model for f64 {}
impl Model for bool {}
impl Model for String {}
impl Model for Value {}
impl Model for std::collections::BTreeMap<String, Option<f64>> {}

/// Deserialises an object key, borrowing it from the input whenever it has no escapes.
#[doc(hidden)]
pub struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }
}

/// Serialises a value that is known to be present (helper that keeps the macro short).
#[doc(hidden)]
pub fn entry<M: SerializeMap, T: Serialize + ?Sized>(
    map: &mut M,
    key: &'static str,
    value: &T,
) -> Result<(), M::Error> {
    map.serialize_entry(key, value)
}

/// Defines a Terra object: public `Option` fields named exactly as Terra's JSON keys, optional
/// `@required { … }` fields (an error naming the key when missing), and an `extra` map for the
/// keys the model does not know. Generates `Deserialize`, `Serialize` and `Model`.
macro_rules! terra_struct {
    (
        $(#[doc = $doc:literal])*
        $name:ident {
            $(@required {
                $( $(#[doc = $rdoc:literal])* $rfield:ident : $rty:ty = $rkey:literal, )*
            })?
            $( $(#[doc = $fdoc:literal])* $field:ident : $ty:ty = $key:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Default, PartialEq)]
        #[allow(non_snake_case)]
        pub struct $name {
            $($( $(#[doc = $rdoc])* pub $rfield: $rty, )*)?
            $( $(#[doc = $fdoc])* pub $field: Option<$ty>, )*
            /// Keys Terra sent that this model does not know, kept verbatim.
            pub extra: $crate::model::Extra,
        }

        impl $name {
            /// The JSON keys this type models, each with the shape of its value.
            pub const SHAPE: $crate::model::macros::FieldShapes = &[
                $($( ($rkey, <$rty as $crate::model::Model>::shape), )*)?
                $( ($key, <$ty as $crate::model::Model>::shape), )*
            ];
        }

        impl $crate::model::Model for $name {
            fn shape() -> $crate::model::Shape {
                $crate::model::Shape::Object(Self::SHAPE)
            }
            fn for_each_unknown(&self, f: &mut dyn FnMut(&str, &::serde_json::Value)) {
                for (k, v) in self.extra.iter() {
                    f(k, v);
                }
                $($( $crate::model::Model::for_each_unknown(&self.$rfield, f); )*)?
                $( $crate::model::Model::for_each_unknown(&self.$field, f); )*
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct __Visitor;
                impl<'de> ::serde::de::Visitor<'de> for __Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a JSON object (Terra ", stringify!($name), ")"))
                    }
                    #[allow(non_snake_case)]
                    fn visit_map<A: ::serde::de::MapAccess<'de>>(
                        self,
                        mut __map: A,
                    ) -> Result<$name, A::Error> {
                        let mut __out = $name::default();
                        $($( let mut $rfield: Option<$rty> = None; )*)?
                        while let Some(__key) = __map.next_key_seed($crate::model::macros::KeySeed)? {
                            match &*__key {
                                $( $key => __out.$field = __map.next_value()?, )*
                                $($( $rkey => $rfield = Some(__map.next_value()?), )*)?
                                _ => {
                                    let __v: ::serde_json::Value = __map.next_value()?;
                                    __out.extra.insert(__key.into_owned(), __v);
                                }
                            }
                        }
                        $($(
                            __out.$rfield = $rfield.ok_or_else(|| {
                                <A::Error as ::serde::de::Error>::missing_field($rkey)
                            })?;
                        )*)?
                        Ok(__out)
                    }
                }
                d.deserialize_map(__Visitor)
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ::serde::ser::SerializeMap as _;
                let mut __map = s.serialize_map(None)?;
                $($( $crate::model::macros::entry(&mut __map, $rkey, &self.$rfield)?; )*)?
                $(
                    if let Some(__v) = &self.$field {
                        $crate::model::macros::entry(&mut __map, $key, __v)?;
                    }
                )*
                self.extra.serialize_into(&mut __map)?;
                __map.end()
            }
        }
    };
}

/// Defines an open numeric enumeration: a newtype over [`Integer`](crate::model::Integer) with
/// a `const` per known value and `name()` for its title; unknown values are kept as they came.
macro_rules! terra_code {
    (
        $(#[doc = $doc:literal])*
        $name:ident {
            $( $(#[doc = $cdoc:literal])* $cname:ident = $value:literal => $title:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub $crate::model::Integer);

        impl $name {
            $( $(#[doc = $cdoc])* pub const $cname: Self = Self($crate::model::Integer::from_i64($value)); )*

            /// The numeric code as Terra sent it, when it is a whole number.
            pub fn code(self) -> Option<i64> {
                self.0.as_i64()
            }

            /// Terra's title for this code (e.g. "Running"), or `None` for a value not yet known.
            pub fn name(self) -> Option<&'static str> {
                match self.0.as_i64() {
                    $( Some($value) => Some($title), )*
                    _ => None,
                }
            }

            /// True when the code is one of the values listed in Terra's schema.
            pub fn is_known(self) -> bool {
                self.name().is_some()
            }
        }

        impl From<i64> for $name {
            fn from(v: i64) -> Self {
                Self($crate::model::Integer::from_i64(v))
            }
        }

        impl $crate::model::Model for $name {}
    };
}

/// Defines an open string enumeration: a newtype over `String` with a `const` per known value.
macro_rules! terra_str_code {
    (
        $(#[doc = $doc:literal])*
        $name:ident {
            $( $(#[doc = $cdoc:literal])* $cname:ident = $value:literal => $title:literal, )*
        }
    ) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, ::serde::Serialize, ::serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            $( $(#[doc = $cdoc])* pub const $cname: &'static str = $value; )*

            /// The value as Terra sent it.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// Terra's title for this value, or `None` for a value not yet known.
            pub fn name(&self) -> Option<&'static str> {
                match self.0.as_str() {
                    $( $value => Some($title), )*
                    _ => None,
                }
            }
        }

        impl $crate::model::Model for $name {}
    };
}
