//! [`MediaStore`] on MongoDB: videos' media files in GridFS's layout — a files document per file
//! and its contents in 255 KiB chunk documents — on two ordinary collections, `media_files` and
//! `media_chunks`, streamed both ways (one chunk in memory at a time).
//!
//! Why not the driver's GridFS API: it needs collection names with a dot (`<bucket>.files`) and
//! server behaviour that MongoDB-protocol servers other than MongoDB (the one the tests run on,
//! nx-27017) lack; the same layout on plain collections works on all of them, and is as fast.
//!
//! ```text
//! media_files  { _id: uuid, name: "{video_id}/{kind}", video_id, file_name, length, sha256, chunk_size, stored_ms }
//! media_chunks { _id, files_id: uuid, n, data: binary }          unique (files_id, n)
//! ```
//!
//! A put writes its chunks first and the files document last, so readers see only complete files;
//! a put whose body fails part-way deletes its chunks. It then deletes the older files of the same
//! name, so the newest wins. A delete removes the files documents first, then their chunks; the
//! deletes queued behind one round trip (videos released together) are one query and one
//! `delete` per collection for all of them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};

use super::batched::{AT_ONCE, of_videos};
use super::translate;
use crate::adapters::group_commit::{Apply, GroupCommit};
use crate::domain::VideoId;
use crate::ports::{ByteStream, MediaInfo, MediaStore, PortError, PortResult};

/// The collection of files documents.
pub const FILES: &str = "media_files";
/// The collection of chunks.
pub const CHUNKS: &str = "media_chunks";
/// GridFS's default chunk size: a chunk document stays far under MongoDB's 16 MiB limit.
pub const CHUNK_SIZE: usize = 255 * 1024;

/// Videos' media files in MongoDB. Cheap to clone.
#[derive(Clone)]
pub struct MongoMediaStore {
    files: Collection<Document>,
    chunks: Collection<Document>,
    deletes: Arc<GroupCommit<VideoId, u64>>,
}

impl std::fmt::Debug for MongoMediaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoMediaStore").field("files", &self.files.namespace()).finish_non_exhaustive()
    }
}

impl MongoMediaStore {
    /// The store on `database`, with its indexes (idempotent).
    pub async fn new(database: &Database) -> PortResult<Self> {
        let (files, chunks) = (database.collection(FILES), database.collection(CHUNKS));
        let deletes = GroupCommit::start(Deletes { files: files.clone(), chunks: chunks.clone() }, AT_ONCE);
        let store = Self { files, chunks, deletes: Arc::new(deletes) };
        let by_chunk = IndexModel::builder()
            .keys(doc! { "files_id": 1, "n": 1 })
            .options(IndexOptions::builder().unique(true).build())
            .build();
        store.chunks.create_index(by_chunk).await.map_err(translate)?;
        store.files.create_index(IndexModel::builder().keys(doc! { "name": 1 }).build()).await.map_err(translate)?;
        store
            .files
            .create_index(IndexModel::builder().keys(doc! { "video_id": 1 }).build())
            .await
            .map_err(translate)?;
        Ok(store)
    }

    fn name(video_id: &VideoId, kind: &str) -> String {
        format!("{video_id}/{kind}")
    }

    async fn write_chunk(&self, files_id: &str, n: i64, data: Vec<u8>) -> PortResult<()> {
        let chunk = doc! {
            "files_id": files_id,
            "n": n,
            "data": Binary { subtype: BinarySubtype::Generic, bytes: data },
        };
        self.chunks.insert_one(chunk).await.map(drop).map_err(translate)
    }

    /// Writes the body's chunks under `files_id`; returns how many bytes.
    async fn write_chunks(&self, files_id: &str, body: &mut ByteStream) -> PortResult<u64> {
        let (mut n, mut length, mut pending) = (0i64, 0u64, Vec::with_capacity(CHUNK_SIZE));
        while let Some(piece) = body.next().await {
            let mut piece = &piece.map_err(|e| PortError::Other(format!("reading the media to store: {e}")))?[..];
            length += piece.len() as u64;
            while !piece.is_empty() {
                let take = piece.len().min(CHUNK_SIZE - pending.len());
                pending.extend_from_slice(&piece[..take]);
                piece = &piece[take..];
                if pending.len() == CHUNK_SIZE {
                    let full = std::mem::replace(&mut pending, Vec::with_capacity(CHUNK_SIZE));
                    self.write_chunk(files_id, n, full).await?;
                    n += 1;
                }
            }
        }
        if !pending.is_empty() {
            self.write_chunk(files_id, n, pending).await?;
        }
        Ok(length)
    }
}

#[async_trait]
impl MediaStore for MongoMediaStore {
    async fn put(&self, video_id: &VideoId, kind: &str, info: &MediaInfo, mut body: ByteStream) -> PortResult<()> {
        let name = Self::name(video_id, kind);
        let files_id = uuid::Uuid::now_v7().to_string();
        let length = match self.write_chunks(&files_id, &mut body).await {
            Ok(length) => length,
            Err(e) => {
                if let Err(cleanup) = self.chunks.delete_many(doc! { "files_id": &files_id }).await {
                    tracing::warn!(%video_id, kind, error = %cleanup, "could not delete the chunks of a failed put");
                }
                return Err(e);
            }
        };
        let file = doc! {
            "_id": &files_id,
            "name": &name,
            "video_id": video_id.as_str(),
            "file_name": &info.file_name,
            "length": length as i64,
            "sha256": &info.sha256,
            "chunk_size": CHUNK_SIZE as i64,
            "stored_ms": chrono::Utc::now().timestamp_millis(),
        };
        self.files.insert_one(file).await.map_err(translate)?;
        let older: Vec<String> = files_of(&self.files, doc! { "name": &name })
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| *id != files_id)
            .collect();
        delete_files(&self.files, &self.chunks, &older).await
    }

    async fn open(&self, video_id: &VideoId, kind: &str) -> PortResult<Option<(MediaInfo, ByteStream)>> {
        let name = Self::name(video_id, kind);
        let newest = self.files.find_one(doc! { "name": &name }).sort(doc! { "stored_ms": -1 }).await;
        let Some(file) = newest.map_err(translate)? else {
            return Ok(None);
        };
        let corrupt = |e: mongodb::bson::document::ValueAccessError| PortError::Corrupt(format!("{FILES} {name}: {e}"));
        let files_id = file.get_str("_id").map_err(corrupt)?.to_owned();
        let length = integer(file.get("length"))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| PortError::Corrupt(format!("{FILES} {name}: no length")))?;
        let info = MediaInfo {
            file_name: file.get_str("file_name").map_err(corrupt)?.to_owned(),
            size: length,
            sha256: file.get_str("sha256").map_err(corrupt)?.to_owned(),
        };
        let cursor = self.chunks.find(doc! { "files_id": &files_id }).sort(doc! { "n": 1 }).await.map_err(translate)?;
        // Chunks in order, each checked to be the next one (a gap is a file deleted under the reader).
        let body = cursor.enumerate().map(move |(expected, chunk)| {
            let chunk = chunk.map_err(std::io::Error::other)?;
            if integer(chunk.get("n")) != Some(expected as i64) {
                return Err(std::io::Error::other(format!("chunk {expected} of {files_id} is missing")));
            }
            let data = chunk.get_binary_generic("data").map_err(std::io::Error::other)?;
            Ok(bytes::Bytes::copy_from_slice(data))
        });
        Ok(Some((info, Box::pin(body))))
    }

    async fn delete(&self, video_id: &VideoId) -> PortResult<u64> {
        self.deletes.submit(video_id.clone()).await
    }
}

/// Deletes the media of many videos at once; each caller learns how many files were its video's.
struct Deletes {
    files: Collection<Document>,
    chunks: Collection<Document>,
}

#[async_trait]
impl Apply<VideoId, u64> for Deletes {
    async fn apply(&self, videos: &[VideoId]) -> Vec<PortResult<u64>> {
        let wanted: Vec<&str> = videos.iter().map(VideoId::as_str).collect();
        let deleted = async {
            let files = files_of(&self.files, of_videos(&wanted)).await?;
            let ids: Vec<String> = files.iter().map(|(id, _)| id.clone()).collect();
            delete_files(&self.files, &self.chunks, &ids).await?;
            let mut per_video: HashMap<String, u64> = HashMap::new();
            for (_, video_id) in files {
                *per_video.entry(video_id).or_default() += 1;
            }
            Ok::<_, PortError>(per_video)
        };
        match deleted.await {
            // A video asked for twice in one batch: its files are gone by the second, as if after.
            Ok(mut per_video) => videos.iter().map(|v| Ok(per_video.remove(v.as_str()).unwrap_or(0))).collect(),
            Err(e) => videos.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// The ids and video ids of the files matching `filter`, in no particular order.
async fn files_of(files: &Collection<Document>, filter: Document) -> PortResult<Vec<(String, String)>> {
    let cursor = files.find(filter).projection(doc! { "_id": 1, "video_id": 1 }).await;
    let docs: Vec<Document> = cursor.map_err(translate)?.try_collect().await.map_err(translate)?;
    let field = |d: &Document, name| {
        d.get_str(name).map(str::to_owned).map_err(|e| PortError::Corrupt(format!("{FILES}: {e}")))
    };
    docs.iter().map(|d| Ok((field(d, "_id")?, field(d, "video_id")?))).collect()
}

/// Deletes files: their documents first (readers stop seeing them), then their chunks.
async fn delete_files(files: &Collection<Document>, chunks: &Collection<Document>, ids: &[String]) -> PortResult<()> {
    if ids.is_empty() {
        return Ok(());
    }
    files.delete_many(doc! { "_id": { "$in": ids } }).await.map_err(translate)?;
    chunks.delete_many(doc! { "files_id": { "$in": ids } }).await.map_err(translate)?;
    Ok(())
}

/// An integer field, however the server chose to encode it (a server may give back a small
/// 64-bit integer as a 32-bit one).
fn integer(value: Option<&Bson>) -> Option<i64> {
    match value? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    }
}
