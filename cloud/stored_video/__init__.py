"""After the event: analyse a stored video with Rekognition Video and turn it into a timeline and highlights.

The flow (`hybridcam analyze-video`): check the file against Rekognition Video's limits, upload it to the
stack's bucket (multipart, resumable), start label detection with the stack's video-jobs SNS topic as the
notification channel, wait for the completion message on the SQS queue subscribed to that topic, fetch every
result page, then write the label timeline, an HTML report, an annotated copy and a highlights reel.
"""
