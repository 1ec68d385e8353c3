"""What the store holds about people: accounts (account.py), transaction records and their
redaction audit (transaction.py), and the products with what a redaction scrubs in each
(products.py). Built on models.store only."""
