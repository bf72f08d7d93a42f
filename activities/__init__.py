"""Activities of the lecture service: planning, codegen, emission, the Gemini adapter and
quality scoring. This package's `__init__` imports nothing, so workflow code can import the
activity classes without pulling in Google's SDK."""
