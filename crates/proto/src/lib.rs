//! Generated gRPC types for every Huddle service, compiled once here.

pub mod user {
    // Generated code is exempt from the function-size rule (scripts/check-sizes.sh).
    #[allow(clippy::too_many_lines)]
    pub mod v1 {
        tonic::include_proto!("huddle.user.v1");
    }
}

pub mod meeting {
    #[allow(clippy::too_many_lines)]
    pub mod v1 {
        tonic::include_proto!("huddle.meeting.v1");
    }
}

pub mod recording {
    #[allow(clippy::too_many_lines)]
    pub mod v1 {
        tonic::include_proto!("huddle.recording.v1");
    }
}

pub mod chat {
    #[allow(clippy::too_many_lines)]
    pub mod v1 {
        tonic::include_proto!("huddle.chat.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Huddle proto, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("huddle_descriptor");
