-- Each vendor's offers and products, kept by triggers: the vendor status (admin pages, a client following a sync)
-- counted both rows per call, O(catalog) on the event loop: 4.5 ms at 31.5k offers (about 150 ms at a million,
-- extrapolated, not measured), and bench.lanes polls it every 50 ms while a sync runs. Local bookkeeping: derived from offers and product_vendors, not replicated.
CREATE TABLE vendor_counts (
    vendor_id TEXT PRIMARY KEY,
    offers    INTEGER NOT NULL DEFAULT 0,
    products  INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO vendor_counts (vendor_id, offers)
SELECT vendor_id, count(*) FROM offers GROUP BY vendor_id;

INSERT INTO vendor_counts (vendor_id, products)
SELECT vendor_id, count(*) FROM product_vendors WHERE true GROUP BY vendor_id
ON CONFLICT (vendor_id) DO UPDATE SET products = excluded.products;

CREATE TRIGGER vendor_counts_offer_in AFTER INSERT ON offers BEGIN
    INSERT INTO vendor_counts (vendor_id, offers) VALUES (NEW.vendor_id, 1)
    ON CONFLICT (vendor_id) DO UPDATE SET offers = offers + 1;
END;

CREATE TRIGGER vendor_counts_offer_out AFTER DELETE ON offers BEGIN
    UPDATE vendor_counts SET offers = offers - 1 WHERE vendor_id = OLD.vendor_id;
END;

CREATE TRIGGER vendor_counts_product_in AFTER INSERT ON product_vendors BEGIN
    INSERT INTO vendor_counts (vendor_id, products) VALUES (NEW.vendor_id, 1)
    ON CONFLICT (vendor_id) DO UPDATE SET products = products + 1;
END;

CREATE TRIGGER vendor_counts_product_out AFTER DELETE ON product_vendors BEGIN
    UPDATE vendor_counts SET products = products - 1 WHERE vendor_id = OLD.vendor_id;
END;
