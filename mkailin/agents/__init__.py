"""The m-KAILIN agents: question writers, the retriever, the evaluator (judge), the answerer."""
