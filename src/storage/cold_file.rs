//! The cold tier's Parquet files: their schema, and writing and reading them.
//!
//! Schema (one row per record, readable by DuckDB and pyarrow as they are):
//! `system_id` utf8, `conversation_id` utf8, `content` utf8, `summary` utf8,
//! `embedding` fixed_size_list<float32, 384>, `timestamp` timestamp[us, UTC],
//! `metadata` utf8 (a JSON object). Pages are zstd-compressed.

use std::sync::Arc;

use arrow_array::{
    Array, FixedSizeListArray, Float32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::record::EMBEDDING_DIM;
use crate::storage::StorageError;

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
        ],
    )
    .map_err(parquet_error)?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).map_err(parquet_error)?,
        ))
        .set_max_row_group_row_count(Some(rows.len().max(1)))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(parquet_error)?;
    writer.write(&batch).map_err(parquet_error)?;
    writer.close().map_err(parquet_error)?;
    Ok(out)
}

/// Reads a cold file back into rows; CPU work for a blocking thread.
pub fn read_cold_file(bytes: Bytes) -> Result<Vec<ColdRow>, StorageError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(parquet_error)?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(parquet_error)?;
        let text = |name: &str| -> Result<&StringArray, StorageError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| parquet_error(format!("column {name} missing or not utf8")))
        };
        let (system, conversation, content, summary, metadata) = (
            text("system_id")?,
            text("conversation_id")?,
            text("content")?,
            text("summary")?,
            text("metadata")?,
        );
        let embedding = batch
            .column_by_name("embedding")
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(|| parquet_error("column embedding missing or not a fixed-size list"))?;
        let values = embedding
            .values()
            .as_any()
            .downcast_ref::<Float32Array>()
            .ok_or_else(|| parquet_error("embedding values are not float32"))?;
        let timestamp = batch
            .column_by_name("timestamp")
            .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>())
            .ok_or_else(|| parquet_error("column timestamp missing or not microseconds"))?;
        for i in 0..batch.num_rows() {
            let start = i * EMBEDDING_DIM;
            rows.push(ColdRow {
                system_id: system.value(i).to_string(),
                conversation_id: conversation.value(i).to_string(),
                content: content.value(i).to_string(),
                summary: summary.value(i).to_string(),
                embedding: values.values()[start..start + EMBEDDING_DIM].to_vec(),
                timestamp_micros: timestamp.value(i),
                metadata_json: metadata.value(i).to_string(),
            });
        }
    }
    Ok(rows)
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
            })
            .collect();
        let bytes = write_cold_file(&rows).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        assert_eq!(read_cold_file(Bytes::from(bytes)).unwrap(), rows);
    }
}
