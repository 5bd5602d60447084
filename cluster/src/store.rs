//! The typed face of the store: transactions and reads over a serde value type `V`.
//!
//! The state machine holds each value bincode-encoded. That keeps `apply` independent of `V`,
//! keeps the map compact (an idle session family costs its encoded bytes, not the size of the
//! largest enum variant), and makes byte-identical replicas a property of the log alone.

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{self, CodecError};
use crate::types::{Compare, Expect, RawOp, RawTxn, Version};

/// A value type the store can hold: encoded with bincode in the log, as JSON in the durable store.
pub trait StoreValue: Serialize + DeserializeOwned + Send + Sync + 'static {}

impl<T> StoreValue for T where T: Serialize + DeserializeOwned + Send + Sync + 'static {}

/// A value and the version (log index) that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<V> {
    pub version: Version,
    pub value: V,
}

/// A compare-and-set transaction: all compares must hold, then all operations apply.
#[derive(Clone, Debug)]
pub struct Txn<V> {
    raw: RawTxn,
    _value: PhantomData<fn(V)>,
}

impl<V: StoreValue> Default for Txn<V> {
    fn default() -> Self {
        Txn { raw: RawTxn::default(), _value: PhantomData }
    }
}

impl<V: StoreValue> Txn<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requires `key` to have no live value.
    pub fn expect_absent(mut self, key: impl Into<String>) -> Self {
        self.raw.compares.push(Compare { key: key.into(), expect: Expect::Absent });
        self
    }

    /// Requires `key`'s live value to have been written at exactly `version`.
    pub fn expect_version(mut self, key: impl Into<String>, version: Version) -> Self {
        self.raw.compares.push(Compare { key: key.into(), expect: Expect::Version(version) });
        self
    }

    /// Requires `key` to be exactly as read: at `version`, or absent when `None`.
    pub fn expect(self, key: impl Into<String>, version: Option<Version>) -> Self {
        match version {
            Some(v) => self.expect_version(key, v),
            None => self.expect_absent(key),
        }
    }

    pub fn put(mut self, key: impl Into<String>, value: &V) -> Result<Self, CodecError> {
        self.raw.ops.push(RawOp::Put { key: key.into(), value: codec::encode(value)? });
        Ok(self)
    }

    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.raw.ops.push(RawOp::Delete { key: key.into() });
        self
    }

    /// Appends `text` to `stream` if the transaction commits (see [`StreamEntry`]).
    ///
    /// [`StreamEntry`]: crate::StreamEntry
    pub fn append(mut self, stream: impl Into<String>, text: impl Into<String>) -> Self {
        self.raw.ops.push(RawOp::Append { stream: stream.into(), text: text.into() });
        self
    }

    pub fn into_raw(self) -> RawTxn {
        self.raw
    }
}

pub(crate) fn decode_value<V: StoreValue>(bytes: &[u8]) -> Result<V, CodecError> {
    codec::decode(bytes)
}
