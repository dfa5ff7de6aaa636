"""Past one machine: index builds on a Ray cluster (`raybuild`) and a Milvus store for the
passages and vectors (`milvus`). Both are optional (`pip install 'rag[cluster]'`); the
single-machine default (a local build into a FAISS folder) uses neither."""
