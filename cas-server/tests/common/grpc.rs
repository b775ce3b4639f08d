//! A tonic client for the server's gRPC face (REAPI v2 cache services and ByteStream).

use bazel_remote_apis::build::bazel::remote::execution::v2 as re;
use bazel_remote_apis::google::bytestream as bs;
pub use bs::byte_stream_client::ByteStreamClient;
pub use re::action_cache_client::ActionCacheClient;
pub use re::capabilities_client::CapabilitiesClient;
pub use re::content_addressable_storage_client::ContentAddressableStorageClient;
use sha2::Digest as _;
use tonic::transport::Channel;

#[allow(unused_imports)] // not every test file names the messages
pub use bazel_remote_apis::build::bazel::remote::execution::v2 as proto;
#[allow(unused_imports)]
pub use bazel_remote_apis::google::bytestream as bsproto;

use super::Server;

/// An HTTP/2 channel to `addr` (h2c).
pub async fn channel_to(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect gRPC")
}

/// An HTTP/2 channel to the server's main port.
pub async fn channel(s: &Server) -> Channel {
    channel_to(&s.addr).await
}

/// The clients of the four services over one channel.
#[derive(Clone)]
pub struct Clients {
    pub caps: CapabilitiesClient<Channel>,
    pub cas: ContentAddressableStorageClient<Channel>,
    pub ac: ActionCacheClient<Channel>,
    pub bs: ByteStreamClient<Channel>,
}

impl Clients {
    pub async fn new(s: &Server) -> Self {
        Self::on(channel(s).await)
    }

    pub fn on(ch: Channel) -> Self {
        Self {
            caps: CapabilitiesClient::new(ch.clone()),
            cas: ContentAddressableStorageClient::new(ch.clone()).max_decoding_message_size(64 << 20),
            ac: ActionCacheClient::new(ch.clone()),
            bs: ByteStreamClient::new(ch).max_decoding_message_size(64 << 20),
        }
    }
}

/// The SHA-256 REAPI digest of `data`.
pub fn sha(data: &[u8]) -> re::Digest {
    re::Digest {
        hash: hex::encode(sha2::Sha256::digest(data)),
        size_bytes: data.len() as i64,
    }
}

/// The BLAKE3 REAPI digest of `data`.
pub fn b3(data: &[u8]) -> re::Digest {
    re::Digest {
        hash: blake3::hash(data).to_hex().to_string(),
        size_bytes: data.len() as i64,
    }
}

/// A request with `authorization: Bearer {token}` metadata.
pub fn authed<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// `blobs/{hash}/{size}` under an optional instance name.
pub fn read_name(instance: &str, d: &re::Digest) -> String {
    let prefix = if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    };
    format!("{prefix}blobs/{}/{}", d.hash, d.size_bytes)
}

/// `uploads/{uuid}/blobs/{hash}/{size}` under an optional instance name.
pub fn write_name(instance: &str, uuid: &str, d: &re::Digest) -> String {
    let prefix = if instance.is_empty() {
        String::new()
    } else {
        format!("{instance}/")
    };
    format!("{prefix}uploads/{uuid}/blobs/{}/{}", d.hash, d.size_bytes)
}

/// A fresh upload id.
pub fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Write requests carrying `data` from `offset` in `chunk`-byte messages, the last one finishing.
pub fn write_requests(name: &str, offset: u64, data: &[u8], chunk: usize, finish: bool) -> Vec<bs::WriteRequest> {
    let mut out = Vec::new();
    let mut off = offset;
    let parts: Vec<&[u8]> = if data.is_empty() {
        vec![&[][..]]
    } else {
        data.chunks(chunk).collect()
    };
    let n = parts.len();
    for (i, part) in parts.into_iter().enumerate() {
        out.push(bs::WriteRequest {
            resource_name: if i == 0 { name.to_string() } else { String::new() },
            write_offset: off as i64,
            finish_write: finish && i + 1 == n,
            data: part.to_vec(),
        });
        off += part.len() as u64;
    }
    out
}

/// Uploads `data` with one ByteStream Write; returns the committed size.
pub async fn write(bs: &mut ByteStreamClient<Channel>, name: &str, data: &[u8]) -> Result<i64, tonic::Status> {
    let reqs = write_requests(name, 0, data, 64 * 1024, true);
    Ok(bs.write(futures::stream::iter(reqs)).await?.into_inner().committed_size)
}

/// Reads a resource whole with ByteStream Read.
pub async fn read(
    bs: &mut ByteStreamClient<Channel>,
    name: &str,
    offset: i64,
    limit: i64,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = bs
        .read(bs::ReadRequest {
            resource_name: name.to_string(),
            read_offset: offset,
            read_limit: limit,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await? {
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}
