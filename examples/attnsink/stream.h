/* `attnsink stream`: a long text through a key/value cache one token at a time, with
 * the loss per position bucket (StreamingLLM's figure), the sink share per layer,
 * speed and memory, for one or more cache policies on the same text. */
#ifndef ATTNSINK_CLI_STREAM_H
#define ATTNSINK_CLI_STREAM_H

/* The default cap on the stream's length (--tokens), BOS included. */
enum { STREAM_DEFAULT_TOKENS = 65536, STREAM_DEFAULT_BUCKETS = 20 };

int cmd_stream(int argc, char **argv);

#endif
