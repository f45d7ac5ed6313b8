/* The window length a checkpoint was trained on, and the note when a command runs
 * it on longer windows: position encodings such as RoPE reach positions there
 * that training never showed the model, so what is measured there may not hold. */
#ifndef ATTNSINK_CLI_TRAINED_LENGTH_H
#define ATTNSINK_CLI_TRAINED_LENGTH_H

#include <attnsink.h>

/* The model's trained length (max_position_embeddings, or n_positions for the
 * gpt2 family; 0 if its config names none) and its position encoding ("rope",
 * "learned", ...; a static string, "rope" when the config names none). */
int model_trained_length(const asink_model *m, const char **positions);

/* Prints one "attnsink: note: ..." line on stderr when tokens exceeds the trained
 * length of m (loaded from dir); cmd and flag name what asked for that many. */
void note_past_trained_length(const asink_model *m, const char *dir, const char *cmd, const char *flag,
                              int tokens);

#endif
