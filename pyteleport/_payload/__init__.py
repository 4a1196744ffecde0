"""The payload: its file format (header, parts, checksum), the pickler that
writes the program into it, and the helpers that rebuild objects on the target.
"""
