"""The gallery index: SQLite metadata + faiss vectors in one folder, or the vectors in a Milvus
collection (:mod:`pgan.index.store`, :mod:`pgan.index.vector_store`), built from a folder or CSV of
images (:mod:`pgan.index.build`).

Example::

    build_index("data/demo/image_test", "runs/gallery", checkpoint="runs/demo/pgan/last.pt")
    index = GalleryIndex.open("runs/gallery")
    hits = index.search(FeatureExtractor(index.checkpoint)(["query.jpg"]), topk=5)[0]
"""

from pgan.index.build import BuildReport, add_to_index, build_index, choose_index_type, remove_from_index
from pgan.index.gallery import GalleryEntry, list_gallery
from pgan.index.store import GalleryIndex, GalleryItem, Hit

__all__ = ["BuildReport", "GalleryEntry", "GalleryIndex", "GalleryItem", "Hit", "add_to_index", "build_index",
           "choose_index_type", "list_gallery", "remove_from_index"]
