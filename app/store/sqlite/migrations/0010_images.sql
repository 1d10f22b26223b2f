-- Thumbnails (GET /images/{id}): the image URLs the stored offers brought in, by id (app/domain/images.py: a hash of
-- the URL), so an id a client sends can only name an image a vendor listed, never a URL of the client's choosing.
-- Rows are written by the offer writer when it rebuilds a product (both runtimes: the kafka node applies updates
-- through the same code). `placeholder` is the BlurHash, set when the image is first thumbnailed (on the kafka
-- runtime through a `placeholder` update on the changelog, so every node sets it at the same position).
CREATE TABLE images (
    id          TEXT PRIMARY KEY,
    url         TEXT NOT NULL,
    vendor_id   TEXT NOT NULL,      -- a vendor listing it: the key its placeholder travels the changelog under
    placeholder TEXT
) WITHOUT ROWID;

-- Which products show an image as their lead image (the list item's thumbnail): their documents are rebuilt when
-- the image's placeholder becomes known.
CREATE TABLE product_images (
    image_id   TEXT NOT NULL,
    product_id TEXT NOT NULL,
    PRIMARY KEY (image_id, product_id)
) WITHOUT ROWID;
CREATE INDEX product_images_product ON product_images (product_id);

-- The documents' shape (app/domain/documents.py VERSION): older ones are rebuilt once at start-up.
INSERT OR IGNORE INTO meta (key, value) VALUES ('documents_version', 1);
