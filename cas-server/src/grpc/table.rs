//! The gRPC method table: which service a method path reaches, its label in metrics and the
//! access and audit logs, and the role it needs.
//!
//! Authorization is decided from the row a path resolves to, before the call reaches any
//! service; a path that names no row needs the read role and is then answered `UNIMPLEMENTED`
//! (unknown methods are not told apart from known ones before authentication). Every method of
//! the four services has a row, the ones this server does not implement too, so that no method
//! reaches a service with a weaker check than its own row.

use crate::auth::{Access, Role};

/// A service the server runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// `build.bazel.remote.execution.v2.Capabilities`.
    Capabilities,
    /// `build.bazel.remote.execution.v2.ContentAddressableStorage`.
    Cas,
    /// `build.bazel.remote.execution.v2.ActionCache`.
    ActionCache,
    /// `google.bytestream.ByteStream`.
    ByteStream,
}

/// One method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Method {
    /// The HTTP/2 path, `/package.Service/Method`.
    pub path: &'static str,
    /// The service that answers it.
    pub service: Service,
    /// Label in metrics, the access log and the audit log.
    pub label: &'static str,
    /// What a caller needs.
    pub access: Access,
}

const fn row(path: &'static str, service: Service, label: &'static str, role: Role) -> Method {
    Method {
        path,
        service,
        label,
        access: Access::Role(role),
    }
}

use Role::{Read, Write};
use Service::{ActionCache, ByteStream, Capabilities, Cas};

/// Every method of the four services.
pub const METHODS: &[Method] = &[
    row(
        "/build.bazel.remote.execution.v2.Capabilities/GetCapabilities",
        Capabilities,
        "grpc_get_capabilities",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs",
        Cas,
        "grpc_find_missing_blobs",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchUpdateBlobs",
        Cas,
        "grpc_batch_update_blobs",
        Write,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/BatchReadBlobs",
        Cas,
        "grpc_batch_read_blobs",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/GetTree",
        Cas,
        "grpc_get_tree",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/SplitBlob",
        Cas,
        "grpc_split_blob",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/GetChunkMapping",
        Cas,
        "grpc_get_chunk_mapping",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/SpliceBlob",
        Cas,
        "grpc_splice_blob",
        Write,
    ),
    row(
        "/build.bazel.remote.execution.v2.ContentAddressableStorage/RegisterChunkMapping",
        Cas,
        "grpc_register_chunk_mapping",
        Write,
    ),
    row(
        "/build.bazel.remote.execution.v2.ActionCache/GetActionResult",
        ActionCache,
        "grpc_get_action_result",
        Read,
    ),
    row(
        "/build.bazel.remote.execution.v2.ActionCache/UpdateActionResult",
        ActionCache,
        "grpc_update_action_result",
        Write,
    ),
    row(
        "/google.bytestream.ByteStream/Read",
        ByteStream,
        "grpc_bytestream_read",
        Read,
    ),
    row(
        "/google.bytestream.ByteStream/Write",
        ByteStream,
        "grpc_bytestream_write",
        Write,
    ),
    // Tells how far an upload got: only writers resume uploads.
    row(
        "/google.bytestream.ByteStream/QueryWriteStatus",
        ByteStream,
        "grpc_bytestream_query_write_status",
        Write,
    ),
];

/// What a path that names no method gets.
pub const UNKNOWN: Method = Method {
    path: "",
    service: Capabilities,
    label: "grpc_unknown",
    access: Access::Role(Read),
};

/// The row of a path, or `None` when it names no method.
pub fn resolve(path: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_reachable_and_labels_are_unique() {
        let mut labels = std::collections::HashSet::new();
        for m in METHODS {
            assert_eq!(resolve(m.path), Some(m), "{}", m.path);
            assert!(labels.insert(m.label), "label {} twice", m.label);
            assert!(m.label.starts_with("grpc_"));
        }
        assert_eq!(resolve("/google.bytestream.ByteStream/Nope"), None);
        assert_eq!(resolve("/google.bytestream.ByteStream/Write/"), None);
    }

    #[test]
    fn writes_need_the_write_role() {
        for m in METHODS {
            let writes = [
                "BatchUpdateBlobs",
                "SpliceBlob",
                "RegisterChunkMapping",
                "UpdateActionResult",
                "/Write",
                "QueryWriteStatus",
            ]
            .iter()
            .any(|w| m.path.ends_with(w));
            let want = if writes { Role::Write } else { Role::Read };
            assert_eq!(m.access, Access::Role(want), "{}", m.path);
        }
    }
}
