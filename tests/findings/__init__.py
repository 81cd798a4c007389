"""Tests of the findings reproduction (batchlab.findings and `batchlab reproduce`)."""
