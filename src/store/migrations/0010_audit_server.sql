-- Which server wrote each audit row: the name `zavro serve --name` was given (the host name by default), so that
-- the rows of several servers sharing one store (issue 16) can be told apart. NULL for rows of local actions
-- (`keys add`…) and for every row written before this column; hashed into the chain only when not NULL, so
-- older rows hash as before.
ALTER TABLE audit ADD COLUMN server TEXT;
