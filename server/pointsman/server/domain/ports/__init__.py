"""The interfaces the domain needs and the records they carry: stores, bus,
conversations, response cache, shared breaker state, chat providers. The
domain owns them; backends/ and providers/ implement them."""
