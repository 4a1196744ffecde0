"""What the ``bash`` and ``ssh`` backends share: the whole move over one shell
command's stdin and stdout (protocol, boot program, shipping, forwarding).
"""
