//! ROS 2 identities of Sinew's message types beyond their CDR encoding: REP 2011 type
//! descriptions and `RIHS01` hashes ([`type_hash`]), and the wire formats of ROS 2's zenoh
//! middleware, rmw_zenoh ([`rmw_zenoh`]). Nothing here touches zenoh itself.

pub mod rmw_zenoh;
mod type_hash;

pub use type_hash::{
    type_hash, Field, FieldType, IndividualTypeDescription, TypeDescription, TypeDescriptionError,
    TypeHash, RIHS01_PREFIX,
};
