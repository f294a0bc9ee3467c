"""The Jibri protocol: stanza codecs (pure) and the brewery client (slixmpp)."""
