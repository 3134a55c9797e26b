"""The run folder: its file names and a fold's done-record (layout), the stage records that let a
stage skip done work (records), finished runs read back (finished), and provenance."""
