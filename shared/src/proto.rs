//! Code generated from `proto/` and the descriptor set served by reflection;
//! one module per versioned package, nothing written by hand.

/// `marketplace.contract.v1`: the contract service's wire contract.
pub mod contract {
    pub mod v1 {
        tonic::include_proto!("marketplace.contract.v1");
    }
}

/// `marketplace.feedback.v1`: the feedback service's wire contract.
pub mod feedback {
    pub mod v1 {
        tonic::include_proto!("marketplace.feedback.v1");
    }
}

/// `marketplace.testing.v1`: the dev-only test clock.
pub mod testing {
    pub mod v1 {
        tonic::include_proto!("marketplace.testing.v1");
    }
}

/// Encoded `FileDescriptorSet` of every proto file, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
