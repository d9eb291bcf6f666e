-- Apps (issue 14): an app's bot is an account like any other, so every path
-- that takes a user id (memberships, messages, reactions, files) takes a
-- bot unchanged.  A bot account cannot log in: its password_hash is not an
-- argon2 hash (verification fails) and its e-mail address is under the
-- reserved .invalid top-level domain (RFC 2606), so no mail reaches it and
-- users.lookupByEmail never finds it.
ALTER TABLE users ADD COLUMN is_bot BOOLEAN NOT NULL DEFAULT false;
