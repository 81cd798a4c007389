"""Tests of the findings reproduction (batchlab.reproduce and `batchlab reproduce`)."""
