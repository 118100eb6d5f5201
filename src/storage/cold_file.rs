//! The cold tier's Parquet files: their schema, and writing and reading them.
//!
//! Schema (one row per record, readable by DuckDB and pyarrow as they are):
//! `system_id` utf8, `conversation_id` utf8, `content` utf8, `summary` utf8,
//! `embedding` fixed_size_list<float32, 384>, `timestamp` timestamp[us, UTC],
//! `metadata` utf8 (a JSON object), `version` uint64 and `version_node` uint32 (the copy's
//! version: hybrid logical clock and writing node; files written before versions lack both
//! and are read as version zero). Pages are zstd-compressed.

use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt32Array, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::record::EMBEDDING_DIM;
use crate::storage::StorageError;
use crate::version::Version;

/// One record as a cold file holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdRow {
    /// the record's system
    pub system_id: String,
    /// the record's conversation id
    pub conversation_id: String,
    /// the full text
    pub content: String,
    /// the first three sentences
    pub summary: String,
    /// the embedding (dequantized from the warm tier's int8 codes)
    pub embedding: Vec<f32>,
    /// microseconds since the Unix epoch
    pub timestamp_micros: i64,
    /// metadata as a JSON object text
    pub metadata_json: String,
    /// the copy's version
    pub version: Version,
}

/// The Arrow schema of a cold file.
pub fn cold_schema() -> Arc<Schema> {
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Arc::new(Schema::new(vec![
        Field::new("system_id", DataType::Utf8, false),
        Field::new("conversation_id", DataType::Utf8, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("summary", DataType::Utf8, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(item, EMBEDDING_DIM as i32),
            false,
        ),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("version_node", DataType::UInt32, false),
    ]))
}

fn parquet_error(e: impl std::fmt::Display) -> StorageError {
    StorageError::Encode(format!("parquet: {e}"))
}

/// Writes rows as one Parquet file (one row group); CPU work for a blocking thread.
pub fn write_cold_file(rows: &[ColdRow]) -> Result<Vec<u8>, StorageError> {
    let schema = cold_schema();
    let strings = |f: fn(&ColdRow) -> &str| -> Arc<dyn Array> {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    let values: Vec<f32> = rows
        .iter()
        .flat_map(|r| r.embedding.iter().copied())
        .collect();
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let embedding = FixedSizeListArray::try_new(
        item,
        EMBEDDING_DIM as i32,
        Arc::new(Float32Array::from(values)),
        None,
    )
    .map_err(parquet_error)?;
    let timestamp = TimestampMicrosecondArray::from(
        rows.iter().map(|r| r.timestamp_micros).collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            strings(|r| &r.system_id),
            strings(|r| &r.conversation_id),
            strings(|r| &r.content),
            strings(|r| &r.summary),
            Arc::new(embedding),
            Arc::new(timestamp),
            strings(|r| &r.metadata_json),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.version.hlc),
            )),
            Arc::new(UInt32Array::from_iter_values(
                rows.iter().map(|r| r.version.node),
            )),
        ],
    )
    .map_err(parquet_error)?;
    // embeddings are nearly incompressible floats: neither zstd nor a dictionary earns its
    // CPU on them (on writing and, above all, on every cold search's read)
    let embedding_column = ColumnPath::new(vec![
        "embedding".to_string(),
        "list".to_string(),
        "item".to_string(),
    ]);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(parquet_error)?,
        ))
        .set_column_compression(embedding_column.clone(), Compression::UNCOMPRESSED)
        .set_column_dictionary_enabled(embedding_column, false)
        .set_max_row_group_row_count(Some(rows.len().max(1)))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(parquet_error)?;
    writer.write(&batch).map_err(parquet_error)?;
    writer.close().map_err(parquet_error)?;
    Ok(out)
}

/// A cold file decoded into columns, scanned without building a row per record.
pub struct ColdColumns {
    batches: Vec<ColdBatch>,
    /// rows before each batch
    starts: Vec<usize>,
    len: usize,
}

struct ColdBatch {
    system: StringArray,
    conversation: StringArray,
    content: StringArray,
    summary: StringArray,
    metadata: StringArray,
    embedding: Float32Array,
    timestamp: TimestampMicrosecondArray,
    /// absent in files written before versions
    version: Option<(UInt64Array, UInt32Array)>,
}

impl ColdColumns {
    /// Decodes a cold file; CPU work for a blocking thread.
    pub fn read(bytes: Bytes) -> Result<ColdColumns, StorageError> {
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.with_batch_size(64 * 1024).build())
            .map_err(parquet_error)?;
        let (mut batches, mut starts, mut len) = (Vec::new(), Vec::new(), 0);
        for batch in reader {
            let batch = batch.map_err(parquet_error)?;
            starts.push(len);
            len += batch.num_rows();
            batches.push(ColdBatch::from_batch(&batch)?);
        }
        Ok(ColdColumns {
            batches,
            starts,
            len,
        })
    }

    /// Rows in the file.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the file holds no row.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes the columns take in memory, roughly.
    pub fn memory_bytes(&self) -> usize {
        self.batches
            .iter()
            .map(|b| {
                b.embedding.len() * 4
                    + [
                        &b.system,
                        &b.conversation,
                        &b.content,
                        &b.summary,
                        &b.metadata,
                    ]
                    .iter()
                    .map(|a| a.values().len() + a.len() * 4)
                    .sum::<usize>()
                    + b.timestamp.len() * 8
            })
            .sum()
    }

    /// Calls `f(row, system, conversation, timestamp, embedding)` for every row.
    pub fn scan(&self, mut f: impl FnMut(usize, &str, &str, i64, &[f32])) {
        for (b, start) in self.batches.iter().zip(&self.starts) {
            let values = b.embedding.values();
            for i in 0..b.system.len() {
                f(
                    start + i,
                    b.system.value(i),
                    b.conversation.value(i),
                    b.timestamp.value(i),
                    &values[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM],
                );
            }
        }
    }

    /// Calls `f(row, system, conversation, version)` for every row.
    pub fn scan_versions(&self, mut f: impl FnMut(usize, &str, &str, Version)) {
        for (b, start) in self.batches.iter().zip(&self.starts) {
            for i in 0..b.system.len() {
                f(
                    start + i,
                    b.system.value(i),
                    b.conversation.value(i),
                    b.version(i),
                );
            }
        }
    }

    /// One row, whole.
    pub fn row(&self, row: usize) -> Option<ColdRow> {
        let bi = self.starts.partition_point(|s| *s <= row).checked_sub(1)?;
        let (b, i) = (&self.batches[bi], row - self.starts[bi]);
        if i >= b.system.len() {
            return None;
        }
        Some(ColdRow {
            version: b.version(i),
            system_id: b.system.value(i).to_string(),
            conversation_id: b.conversation.value(i).to_string(),
            content: b.content.value(i).to_string(),
            summary: b.summary.value(i).to_string(),
            embedding: b.embedding.values()[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM].to_vec(),
            timestamp_micros: b.timestamp.value(i),
            metadata_json: b.metadata.value(i).to_string(),
        })
    }
}

impl ColdBatch {
    fn version(&self, i: usize) -> Version {
        self.version
            .as_ref()
            .map(|(hlc, node)| Version {
                hlc: hlc.value(i),
                node: node.value(i),
            })
            .unwrap_or_default()
    }

    fn from_batch(batch: &RecordBatch) -> Result<ColdBatch, StorageError> {
        let text = |name: &str| -> Result<StringArray, StorageError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .cloned()
                .ok_or_else(|| parquet_error(format!("column {name} missing or not utf8")))
        };
        let embedding = batch
            .column_by_name("embedding")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(|| parquet_error("column embedding missing or not a fixed-size list"))?;
        let values = embedding
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| parquet_error("embedding values are not float32"))?
            .slice(
                embedding.offset() * EMBEDDING_DIM,
                embedding.len() * EMBEDDING_DIM,
            );
        let timestamp = batch
            .column_by_name("timestamp")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .cloned()
            .ok_or_else(|| parquet_error("column timestamp missing or not microseconds"))?;
        let hlc = batch
            .column_by_name("version")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .cloned();
        let node = batch
            .column_by_name("version_node")
            .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
            .cloned();
        let version = hlc.zip(node);
        Ok(ColdBatch {
            system: text("system_id")?,
            conversation: text("conversation_id")?,
            content: text("content")?,
            summary: text("summary")?,
            metadata: text("metadata")?,
            embedding: values,
            timestamp,
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let rows: Vec<ColdRow> = (0..5)
            .map(|i| ColdRow {
                system_id: format!("s{i}"),
                conversation_id: format!("c{i}"),
                content: "full text. more.".into(),
                summary: "full text.".into(),
                embedding: (0..EMBEDDING_DIM).map(|d| (d * i) as f32 / 1e3).collect(),
                timestamp_micros: 1_700_000_000_000_000 + i as i64,
                metadata_json: format!("{{\"n\":{i}}}"),
                version: Version {
                    hlc: 1 << 20 | i as u64,
                    node: 3,
                },
            })
            .collect();
        let bytes = write_cold_file(&rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let meta = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(bytes.clone()))
            .unwrap()
            .metadata()
            .clone();
        let chunk = meta.row_group(0).column(4);
        assert_eq!(chunk.column_path().string(), "embedding.list.item");
        assert_eq!(chunk.compression(), Compression::UNCOMPRESSED);
        assert!(matches!(
            meta.row_group(0).column(0).compression(),
            Compression::ZSTD(_)
        ));
        let columns = ColdColumns::read(Bytes::from(bytes)).unwrap();
        assert_eq!(columns.len(), 5);
        let back: Vec<ColdRow> = (0..columns.len()).filter_map(|i| columns.row(i)).collect();
        assert_eq!(back, rows);
        let mut seen = Vec::new();
        columns.scan(|i, s, c, t, e| seen.push((i, s.to_string(), c.to_string(), t, e[1])));
        assert_eq!(
            seen[4],
            (
                4,
                "s4".into(),
                "c4".into(),
                rows[4].timestamp_micros,
                rows[4].embedding[1]
            )
        );
    }
}
